"""Sealed ingress: a portal seals its submission for the broker's key; the broker opens
it in memory only, checks it as any other, and rejects what does not open, saying why.

Against the real RabbitMQ node, in a vhost of this module's own. Interop: a JWE made by
jwcrypto (not the library the broker uses) for the broker's key is accepted.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import AsyncIterator

import aio_pika
import httpx
import jwcrypto.jwe
import jwcrypto.jwk
import pytest
from lxml import etree

from broker.amqp import publishing, topology
from broker.app import party_keys
from broker.errors import Reason
from broker.http_api import (
    ApiLimits,
    Authenticator,
    IngressPublisher,
    TokenTable,
    build_api,
    hash_token,
)
from broker.sdk.portal import Portal
from broker.stores.sqlite import SqliteStatusStore
from monitoring.labels import ReceiptKind
from sealing import SEALED_CONTENT_TYPE, RecipientKey, seal
from signing.keyfiles import encryption_paths
from tests.sealing_support import agency
from tests.world import World, running_world

TIMEOUT = 30.0
HAMBURG = "psw:02000000"
TOKEN = secrets.token_urlsafe(16)


@pytest.fixture(scope="module")
async def world(
    module_vhost_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with (
        running_world(
            module_vhost_url, tmp_path_factory.mktemp("sealed-ingress"), agencies=set()
        ) as running,
        agency(running, HAMBURG, party_keys(running.settings, HAMBURG)),
    ):
        yield running


def _broker_key(world: World) -> RecipientKey:
    (cert, _), *_ = encryption_paths(world.settings.pki, world.settings.broker_kennung)
    return RecipientKey.from_file(cert)


@pytest.fixture(scope="module")
async def sealing_portal(world: World, module_vhost_url: str) -> AsyncIterator[Portal]:
    portal = Portal(
        module_vhost_url,
        world.settings.portal_kennung,
        world.portal_signer,
        world.parts.verifier(),
        seal_for=_broker_key(world),
    )
    await portal.start(receive=False)  # the world's portal reads the receipts
    try:
        yield portal
    finally:
        await portal.close()


async def _ingress_tap(amqp_url: str) -> tuple[aio_pika.abc.AbstractConnection, list[bytes]]:
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.INGRESS_EXCHANGE, routing_key=topology.INGRESS_ROUTING_KEY)
    seen: list[bytes] = []

    async def keep(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        seen.append(message.body)
        await message.ack()

    await queue.consume(keep)
    return connection, seen


async def test_the_portal_sdk_seals_for_the_broker_and_the_message_arrives(
    world: World, sealing_portal: Portal, module_vhost_url: str
) -> None:
    connection, ingress = await _ingress_tap(module_vhost_url)
    try:
        uuid = await sealing_portal.submit(world.fresh("anmeldung-hamburg.xml"))
        state = await world.portal.wait_final(uuid, TIMEOUT)
    finally:
        await connection.close()

    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert ingress and all(b"Petersen" not in body for body in ingress)
    assert all(body.count(b".") == 4 for body in ingress)


async def _publish_sealed(world: World, amqp_url: str, body: bytes, uuid: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.INGRESS_EXCHANGE, ensure=False)
        await publishing.publish_confirmed(
            exchange,
            publishing.message(
                body,
                message_id=uuid,
                reply_to=world.settings.portal_kennung,
                content_type=SEALED_CONTENT_TYPE,
            ),
            topology.INGRESS_ROUTING_KEY,
            5.0,
        )
    finally:
        await connection.close()


async def test_a_jwe_made_by_jwcrypto_for_the_broker_is_accepted(
    world: World, module_vhost_url: str
) -> None:
    root = world.fresh("anmeldung-hamburg.xml")
    uuid = world.uuid_of(root)
    signed = world.portal_signer.sign(root)
    key = _broker_key(world)
    made = jwcrypto.jwe.JWE(
        signed,
        protected=json.dumps(
            {"alg": "RSA-OAEP-256", "enc": "A256GCM", "kid": key.kid, "cty": "application/xml"}
        ),
    )
    made.add_recipient(jwcrypto.jwk.JWK.from_pyca(key.certificate.public_key()))

    await _publish_sealed(world, module_vhost_url, made.serialize(compact=True).encode(), uuid)
    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert state.receipts[0].digest == hashlib.sha256(signed).hexdigest()  # of what was sealed


async def test_a_submission_sealed_for_another_key_is_rejected_as_seal_key_unknown(
    world: World, module_vhost_url: str
) -> None:
    root = world.fresh("anmeldung-hamburg.xml")
    uuid = world.uuid_of(root)
    agency_key = RecipientKey.from_file(encryption_paths(world.settings.pki, HAMBURG)[0][0])

    await _publish_sealed(
        world, module_vhost_url, seal(world.portal_signer.sign(root), agency_key), uuid
    )
    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert [(r.kind, r.reason) for r in state.receipts] == [
        (ReceiptKind.REJECTED, Reason.SEAL_KEY_UNKNOWN)
    ]
    assert agency_key.kid in str(state.receipts[0].detail)


async def test_a_corrupted_sealed_submission_is_rejected_as_seal_invalid(
    world: World, module_vhost_url: str
) -> None:
    root = world.fresh("anmeldung-hamburg.xml")
    uuid = world.uuid_of(root)
    sealed = seal(world.portal_signer.sign(root), _broker_key(world))
    parts = sealed.split(b".")
    parts[4] = parts[4][::-1]  # the authentication tag, reversed

    await _publish_sealed(world, module_vhost_url, b".".join(parts), uuid)
    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert [(r.kind, r.reason) for r in state.receipts] == [
        (ReceiptKind.REJECTED, Reason.SEAL_INVALID)
    ]


async def test_the_hardened_parser_reads_what_a_seal_carries(
    world: World, module_vhost_url: str
) -> None:
    root = world.fresh("anmeldung-hamburg.xml")
    uuid = world.uuid_of(root)
    signed = world.portal_signer.sign(root)
    hostile = signed.replace(b"?>", b'?>\n<!DOCTYPE x [<!ENTITY big "' + b"A" * 64 + b'">]>', 1)
    assert etree.fromstring(hostile) is not None  # well-formed, with an entity declared

    await _publish_sealed(world, module_vhost_url, seal(hostile, _broker_key(world)), uuid)
    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert [(r.kind, r.reason) for r in state.receipts] == [
        (ReceiptKind.REJECTED, Reason.MALFORMED_XML)
    ]
    assert "DOCTYPE" in str(state.receipts[0].detail)


async def test_the_http_api_takes_a_sealed_submission_and_publishes_it_sealed(
    world: World, module_vhost_url: str
) -> None:
    ingress = IngressPublisher(module_vhost_url, confirm_timeout=5.0)
    await ingress.start()
    app = build_api(
        status=SqliteStatusStore(world.settings.status_path),
        ingress=ingress,
        catalog=world.parts.catalog,
        authenticate=Authenticator(TokenTable({hash_token(TOKEN): world.settings.portal_kennung})),
        limits=ApiLimits(max_body_bytes=1024 * 1024, queue_limit=1000),
        opener=world.parts.sealer().open,
    )
    root = world.fresh("anmeldung-hamburg.xml")
    signed = world.portal_signer.sign(root)
    connection, seen = await _ingress_tap(module_vhost_url)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as client:
            answer = await client.post(
                "/v1/messages",
                content=seal(signed, _broker_key(world)),
                headers={
                    "authorization": f"Bearer {TOKEN}",
                    "content-type": SEALED_CONTENT_TYPE,
                },
            )
            refused = await client.post(
                "/v1/messages",
                content=b"x.y.z.w.v",
                headers={
                    "authorization": f"Bearer {TOKEN}",
                    "content-type": SEALED_CONTENT_TYPE,
                },
            )
        state = await world.portal.wait_final(world.uuid_of(root), TIMEOUT)
    finally:
        await ingress.close()
        await connection.close()

    assert answer.status_code == 202, answer.text
    assert answer.json()["sha256"] == hashlib.sha256(signed).hexdigest()
    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert seen and all(b"Petersen" not in body for body in seen)
    assert (refused.status_code, refused.json()["detail"].split(":")[0]) == (400, "seal-invalid")
