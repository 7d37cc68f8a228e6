"""Sealed delivery by webhook: the endpoint gets the JWE, opens it with the agency's key
and verifies the author's signature; one that cannot open it says so with a 422, and
its author is told at once, with the reason, while the copy is parked still sealed."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections.abc import AsyncIterator

import pytest
from joserfc import jwe
from joserfc.jwk import KeySet, RSAKey

from broker.amqp import topology
from broker.errors import DeliveryFailure
from monitoring.labels import ReceiptKind
from signing import parse_untrusted
from signing.keyfiles import encryption_paths
from tests.sealing_support import Hook, drain
from tests.world import World, running_world, webhook_directory

TIMEOUT = 30.0
GEWERBE = "gew:02000000"
SECRET_ENV = "XBROKER_TEST_SEALED_WEBHOOK_SECRET"


@pytest.fixture(scope="module")
async def scene(
    module_vhost_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[World, Hook]]:
    hook = Hook()
    server = await asyncio.start_server(hook.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    os.environ[SECRET_ENV] = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    tmp = tmp_path_factory.mktemp("sealed-webhook")
    try:
        async with running_world(
            module_vhost_url,
            tmp / "state",
            directory=webhook_directory(tmp, f"http://127.0.0.1:{port}/hook", SECRET_ENV),
            webhook_retry_seconds=(3600.0,),
        ) as world:
            yield world, hook
    finally:
        server.close()
        os.environ.pop(SECRET_ENV, None)


async def test_the_receiver_opens_the_copy_with_its_key_and_verifies_it(
    scene: tuple[World, Hook],
) -> None:
    world, hook = scene
    (_, key), *_ = encryption_paths(world.settings.pki, GEWERBE)
    keys = KeySet([RSAKey.import_key(key.read_bytes())])
    allowed = jwe.JWERegistry(algorithms=["RSA-OAEP-256", "ECDH-ES+A256KW", "A256GCM"])
    opened: list[bytes] = []

    def receive(body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        assert headers["content-type"] == "application/jose"
        opened.append(jwe.decrypt_compact(body, keys, registry=allowed).plaintext or b"")
        return 204, {}

    hook.answer = receive
    uuid = await world.portal.submit(world.fresh("gewerbe-anmeldung.xml"))
    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    (plaintext,) = opened
    verified = world.parts.verifier().verify_now(parse_untrusted(plaintext))
    assert verified.subject_kennung == world.settings.portal_kennung


async def test_a_receiver_that_cannot_open_its_copy_says_so_and_the_author_is_told(
    scene: tuple[World, Hook], module_vhost_url: str
) -> None:
    world, hook = scene
    hook.answer = lambda body, headers: (422, {"xbroker-refusal": "copy-seal-key-unknown"})
    uuid = await world.portal.submit(world.fresh("gewerbe-anmeldung.xml"))

    state = await world.portal.wait_final(uuid, TIMEOUT)

    failed = state.receipts[-1]
    assert (failed.kind, failed.reason, failed.recipients) == (
        ReceiptKind.FAILED,
        DeliveryFailure.COPY_SEAL_KEY_UNKNOWN,
        (GEWERBE,),
    )
    (parked,) = await drain(module_vhost_url, f"{topology.agency_queue(GEWERBE)}.dead")
    assert parked.body == hook.bodies[-1]  # the copy as pushed: still sealed
    assert (parked.headers or {}).get("x-xbroker-refusal") == "copy-seal-key-unknown"
