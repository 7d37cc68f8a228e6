"""Sealed delivery, the agency's side: each copy waits sealed for its agency's key, opens
only there (also with the other JOSE library), and a copy that does not open is never
handed over, never lost, and reported to its author with the specific reason.

Against the real RabbitMQ node, in a vhost of this module's own. No agency client runs
unless a test starts one with the key ring it needs.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import jwcrypto.jwe
import jwcrypto.jwk
import pytest

from broker.amqp import topology
from broker.app import party_keys
from broker.errors import DeliveryFailure
from broker.stores.sqlite import SqliteStatusStore
from monitoring.labels import ReceiptKind
from routing import Directory
from sealing import SEALED_CONTENT_TYPE, KeyRing, RecipientKey, kid_of
from signing import parse_untrusted
from signing.devpki import issue_encryption
from signing.keyfiles import encryption_paths
from tests.polling import eventually
from tests.sealing_support import agency, copy_tap, drain, stranger_keys
from tests.world import EXAMPLES, World, running_world

TIMEOUT = 30.0
HAMBURG = "psw:02000000"
NORDERSTEDT = "psw:01060063"


@pytest.fixture(scope="module")
async def world(
    module_vhost_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    async with running_world(
        module_vhost_url, tmp_path_factory.mktemp("sealed"), agencies=set()
    ) as running:
        yield running


def _own_keys(world: World, kennung: str) -> KeyRing:
    return party_keys(world.settings, kennung)


async def test_a_copy_waits_sealed_and_the_other_jose_library_opens_it(
    world: World, module_vhost_url: str
) -> None:
    root = world.fresh("anmeldung-hamburg.xml")
    async with copy_tap(module_vhost_url, HAMBURG) as tap:
        uuid = await world.portal.submit(root)
        copy = await tap.of(uuid)
    (cert, key), *_ = encryption_paths(world.settings.pki, HAMBURG)
    opened = jwcrypto.jwe.JWE()
    opened.deserialize(copy.body.decode("ascii"), key=jwcrypto.jwk.JWK.from_pem(key.read_bytes()))
    verified = world.parts.verifier().verify_now(parse_untrusted(opened.payload))

    assert copy.content_type == SEALED_CONTENT_TYPE
    assert kid_of(copy.body) == RecipientKey.from_file(cert).kid
    assert b"Petersen" not in copy.body and b"Petersen" in opened.payload
    assert verified.subject_kennung == world.settings.portal_kennung
    async with agency(world, HAMBURG, _own_keys(world, HAMBURG)) as hamburg:
        state = await world.portal.wait_final(uuid, TIMEOUT)
    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    (delivery,) = hamburg.received
    assert delivery.body == opened.payload  # opened, then verified end to end by the SDK


async def test_a_copy_sealed_for_a_key_the_agency_does_not_hold_is_refused_and_parked(
    world: World, module_vhost_url: str
) -> None:
    async with copy_tap(module_vhost_url, HAMBURG) as tap:
        async with agency(world, HAMBURG, stranger_keys()) as hamburg:
            uuid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))
            state = await world.portal.wait_final(uuid, TIMEOUT)
        copy = await tap.of(uuid)

    failed = state.receipts[-1]
    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.FAILED]
    assert (failed.reason, failed.recipients) == (DeliveryFailure.COPY_SEAL_KEY_UNKNOWN, (HAMBURG,))
    assert failed.issuer == world.settings.broker_kennung
    assert kid_of(copy.body) in str(failed.detail)
    assert (hamburg.received, hamburg.client.refused) == ([], 1)
    parked = await drain(module_vhost_url, f"{topology.agency_queue(HAMBURG)}.dead")
    assert [(m.message_id, m.body) for m in parked] == [(uuid, copy.body)]  # still sealed
    await _failed_event(world, uuid, DeliveryFailure.COPY_SEAL_KEY_UNKNOWN)


async def test_a_corrupted_copy_is_refused_as_invalid_and_parked(
    world: World, module_vhost_url: str
) -> None:
    uuid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))
    await world.settled(uuid)
    (waiting,) = await drain(module_vhost_url, topology.agency_queue(HAMBURG))
    header, wrapped, iv, ciphertext, tag = waiting.body.split(b".")
    damaged = bytearray(base64.urlsafe_b64decode(ciphertext + b"=" * (-len(ciphertext) % 4)))
    damaged[0] ^= 0x01
    corrupted = b".".join(
        [header, wrapped, iv, base64.urlsafe_b64encode(bytes(damaged)).rstrip(b"="), tag]
    )
    await _put_back(module_vhost_url, waiting, corrupted)

    async with agency(world, HAMBURG, _own_keys(world, HAMBURG)) as hamburg:
        state = await world.portal.wait_final(uuid, TIMEOUT)

    failed = state.receipts[-1]
    assert (failed.kind, failed.reason) == (ReceiptKind.FAILED, DeliveryFailure.COPY_SEAL_INVALID)
    assert "authentication tag" in str(failed.detail)
    assert hamburg.received == []
    parked = await drain(module_vhost_url, f"{topology.agency_queue(HAMBURG)}.dead")
    assert [m.body for m in parked] == [corrupted]


async def test_every_copy_is_counted_as_sealed(world: World) -> None:
    sealed = world.registry.get_sample_value(
        "xbroker_copies_total", {"agency": HAMBURG, "sealing": "sealed"}
    )
    clear = world.registry.get_sample_value(
        "xbroker_copies_total", {"agency": HAMBURG, "sealing": "clear"}
    )

    assert sealed is not None and sealed >= 3
    assert clear is None


async def test_a_key_rotation_seals_for_the_new_key_and_old_copies_open_until_it_is_removed(
    world: World, module_vhost_url: str, tmp_path: Path
) -> None:
    pki = world.settings.pki
    old = {k: RecipientKey.from_file(encryption_paths(pki, k)[0][0]).kid for k in _BOTH}
    async with (
        copy_tap(module_vhost_url, HAMBURG) as hh,
        copy_tap(module_vhost_url, NORDERSTEDT) as nd,
    ):
        before = await _submit_both(world)
        rotated = _rotate(world, tmp_path)
        await world.broker.reload_directory(rotated)
        after = await _submit_both(world)
        kids = {
            k: [kid_of((await tap.of(before[k])).body), kid_of((await tap.of(after[k])).body)]
            for k, tap in ((HAMBURG, hh), (NORDERSTEDT, nd))
        }
    new = {k: RecipientKey.from_file(encryption_paths(pki, k)[1][0]).kid for k in _BOTH}
    assert kids == {k: [old[k], new[k]] for k in _BOTH}

    # Hamburg still holds both keys; Norderstedt has already removed its old one.
    both = _own_keys(world, HAMBURG)
    new_only = KeyRing.from_files([encryption_paths(pki, NORDERSTEDT)[1][1]])
    async with (
        agency(world, HAMBURG, both) as hamburg,
        agency(world, NORDERSTEDT, new_only) as norderstedt,
    ):
        states = {
            uuid: await world.portal.wait_final(uuid, TIMEOUT)
            for uuid in (*before.values(), *after.values())
        }

    def fate(uuid: str) -> ReceiptKind | DeliveryFailure | None:
        last = states[uuid].receipts[-1]
        return last.reason if last.kind is ReceiptKind.FAILED else last.kind

    assert sorted(d.uuid for d in hamburg.received) == sorted([before[HAMBURG], after[HAMBURG]])
    assert [d.uuid for d in norderstedt.received] == [after[NORDERSTEDT]]
    assert fate(before[NORDERSTEDT]) is DeliveryFailure.COPY_SEAL_KEY_UNKNOWN
    assert {fate(before[HAMBURG]), fate(after[HAMBURG]), fate(after[NORDERSTEDT])} == {
        ReceiptKind.DELIVERED
    }


_BOTH = (HAMBURG, NORDERSTEDT)


async def _submit_both(world: World) -> dict[str, str]:
    return {
        HAMBURG: await world.portal.submit(world.fresh("anmeldung-hamburg.xml")),
        NORDERSTEDT: await world.portal.submit(world.fresh("anmeldung-norderstedt.xml")),
    }


def _rotate(world: World, tmp_path: Path) -> Directory:
    """Both agencies get a second encryption key and register it beside the first."""
    pki = world.settings.pki
    text = (EXAMPLES / "directory.toml").read_text(encoding="utf-8")
    for kennung in _BOTH:
        issue_encryption(pki / "ca", kennung, kennung, pki)
        stem = kennung.replace(":", "_")
        text = text.replace(
            f'encryption = ["{stem}.enc.crt"]',
            f'encryption = ["{stem}.enc.crt", "{stem}.enc.2.crt"]',
        )
    path = tmp_path / "directory.toml"
    path.write_text(text, encoding="utf-8")
    return Directory.load(path, world.settings.party_certificate_dir)


async def _put_back(
    amqp_url: str, original: aio_pika.abc.AbstractIncomingMessage, body: bytes
) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.DELIVER_EXCHANGE, ensure=False)
        await exchange.publish(
            aio_pika.Message(
                body,
                message_id=original.message_id,
                content_type=original.content_type,
                headers=dict(original.headers or {}),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            topology.agency_routing_key(HAMBURG),
            mandatory=True,
            timeout=5.0,
        )
    finally:
        await connection.close()


async def _failed_event(world: World, uuid: str, reason: DeliveryFailure) -> None:
    store = SqliteStatusStore(world.settings.status_path)

    async def failed() -> bool:
        return any(
            e.kind.value == "failed" and e.reason == reason.value
            for e in (await store.timeline(uuid)).events
        )

    try:
        await eventually(
            failed, what=f"a failed event ({reason.value}) in the Laufzettel of {uuid}"
        )
    finally:
        await store.close()
