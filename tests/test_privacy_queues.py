"""Datensparsamkeit in the queues: with sealing on, no queue holds a readable payload.

A unique marker goes into submissions that the portal seals for the broker, to agencies
that are sealed. Afterwards the copies wait where copies wait: one delivered to its
agency, one waiting in an agency's inbox, one its agency could not open (parked in the
inbox's dead-letter queue), one in a webhook's retry queue, and one in the ingress queue
of a stopped broker. Then:

- every queue of the vhost (listed with ``rabbitmqctl``) is read through the management
  API: the waiting messages are there, the marker is in none of them;
- every file of the node's data directory is searched: the marker is in none;
- the agency's handler got the marker, opened and verified end to end.

A control message in clear with a second marker, waiting in a quorum queue of its own,
is found by both searches: they would have seen the marker had it been there.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import urllib.request
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import pytest
from lxml import etree

from broker.amqp import topology
from broker.app import party_keys
from broker.errors import DeliveryFailure
from broker.sdk.agency import Delivery
from broker.sdk.portal import Portal
from sealing import RecipientKey
from signing.keyfiles import encryption_paths
from tests.conftest import RabbitMQ
from tests.polling import eventually
from tests.sealing_support import Hook, agency, stranger_keys
from tests.world import World, running_world, webhook_directory

TIMEOUT = 30.0
MARKER = f"Versiegelt{secrets.token_hex(8)}"
CONTROL = f"Kontrolle{secrets.token_hex(8)}"
HAMBURG, NORDERSTEDT, GEWERBE = "psw:02000000", "psw:01060063", "gew:02000000"
SECRET_ENV = "XBROKER_TEST_PRIVACY_WEBHOOK_SECRET"
CONTROL_QUEUE = "privacy.control"
RETRY_SECONDS = 3600.0


@dataclass
class Scene:
    world: World
    vhost: str
    received: list[Delivery]
    hook: Hook
    uuids: dict[str, str]


def _marked(world: World, sample: str, element: str) -> etree._Element:
    root = world.fresh(sample)
    (target,) = root.iter(element)
    target.text = MARKER
    return root


async def _depth(amqp_url: str, queue: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
    finally:
        await connection.close()


async def _control(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(
            CONTROL_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await channel.default_exchange.publish(
            aio_pika.Message(
                f"<kontrolle>{CONTROL}</kontrolle>".encode(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            CONTROL_QUEUE,
            timeout=5.0,
        )
    finally:
        await connection.close()


@pytest.fixture(scope="module")
async def scene(
    module_vhost_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Scene]:
    hook = Hook()
    server = await asyncio.start_server(hook.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    os.environ[SECRET_ENV] = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    tmp = tmp_path_factory.mktemp("privacy-queues")
    uuids: dict[str, str] = {}
    try:
        async with running_world(
            module_vhost_url,
            tmp / "state",
            agencies=set(),
            directory=webhook_directory(tmp, f"http://127.0.0.1:{port}/hook", SECRET_ENV),
            webhook_retry_seconds=(RETRY_SECONDS,),
        ) as world:
            pki = world.settings.pki
            (cert, _), *_ = encryption_paths(pki, world.settings.broker_kennung)
            portal = Portal(
                module_vhost_url,
                world.settings.portal_kennung,
                world.portal_signer,
                world.parts.verifier(),
                seal_for=RecipientKey.from_file(cert),
            )
            await portal.start(receive=False)
            try:
                own = party_keys(world.settings, HAMBURG)
                async with agency(world, HAMBURG, own) as hamburg:
                    uuids["delivered"] = await portal.submit(
                        _marked(world, "anmeldung-hamburg.xml", "familienname")
                    )
                    await world.portal.wait_final(uuids["delivered"], TIMEOUT)
                uuids["inbox"] = await portal.submit(
                    _marked(world, "anmeldung-hamburg.xml", "familienname")
                )
                await world.settled(uuids["inbox"])
                async with agency(world, NORDERSTEDT, stranger_keys()):
                    uuids["dead"] = await portal.submit(
                        _marked(world, "anmeldung-norderstedt.xml", "familienname")
                    )
                    state = await world.portal.wait_final(uuids["dead"], TIMEOUT)
                assert state.receipts[-1].reason is DeliveryFailure.COPY_SEAL_KEY_UNKNOWN
                uuids["retry"] = await portal.submit(
                    _marked(world, "gewerbe-anmeldung.xml", "vorname")
                )
                delay = f"{topology.agency_queue(GEWERBE)}.delay.{RETRY_SECONDS:g}s"

                async def waits_for_retry() -> bool:
                    return bool(hook.bodies) and await _depth(module_vhost_url, delay) == 1

                await eventually(waits_for_retry, what="the copy waiting for its retry")
                await world.broker.stop()
                uuids["ingress"] = await portal.submit(
                    _marked(world, "anmeldung-hamburg.xml", "familienname")
                )
                await _control(module_vhost_url)
            finally:
                await portal.close()
            vhost = unquote(urlsplit(module_vhost_url).path.lstrip("/"))
            yield Scene(world, vhost, hamburg.received, hook, uuids)
    finally:
        server.close()
        os.environ.pop(SECRET_ENV, None)


def _management_get(rabbitmq: RabbitMQ, vhost: str, queue: str, count: int) -> list[bytes]:
    """Up to ``count`` messages of ``queue``, read and put back through the management API."""
    assert rabbitmq.node is not None and rabbitmq.node.management_port
    url = (
        f"http://127.0.0.1:{rabbitmq.node.management_port}/api/queues/"
        f"{quote(vhost, safe='')}/{quote(queue, safe='')}/get"
    )
    body = json.dumps(
        {"count": count, "ackmode": "reject_requeue_true", "encoding": "auto", "truncate": 10**7}
    ).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    request.add_header("content-type", "application/json")
    token = base64.b64encode(f"{rabbitmq.node.user}:{rabbitmq.node.password}".encode()).decode()
    request.add_header("authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=30) as answer:
        messages = json.load(answer)
    return [
        base64.b64decode(m["payload"])
        if m["payload_encoding"] == "base64"
        else m["payload"].encode()
        for m in messages
    ]


@pytest.fixture(scope="module")
def queue_contents(
    scene: Scene, rabbitmq: RabbitMQ, rabbitmqctl: Callable[..., str]
) -> dict[str, list[bytes]]:
    """Every queue of the vhost that holds messages, and what they are. rabbitmqctl names
    the queues; its message counts lag (docs: RABBITMQ.md), so each queue is read. A
    stream (the XTA agency's message box) cannot be read this way: it must have held
    nothing, ever (its committed offset is the count of everything it took)."""
    listed = rabbitmqctl("list_queues", "-p", scene.vhost, "name", "type", "messages")
    rows = [line.split() for line in listed.splitlines() if line.strip()]
    assert topology.INGRESS_QUEUE in {name for name, *_ in rows}, listed
    streams = {name: int(count) for name, kind, count in rows if kind == "stream"}
    assert set(streams.values()) <= {0}, streams
    contents = {
        name: _management_get(rabbitmq, scene.vhost, name, 100)
        for name, kind, _ in rows
        if kind != "stream"
    }
    return {name: bodies for name, bodies in contents.items() if bodies}


def test_the_marker_reaches_the_agency_s_handler_opened_and_verified(scene: Scene) -> None:
    (delivery,) = scene.received

    assert delivery.uuid == scene.uuids["delivered"]
    assert MARKER.encode() in delivery.body
    assert scene.world.parts.directory.certificate_registered(
        scene.world.settings.portal_kennung, delivery.signer_fingerprint
    )


def test_every_kind_of_queue_holds_its_waiting_message(
    queue_contents: dict[str, list[bytes]],
) -> None:
    holding = {name: len(bodies) for name, bodies in queue_contents.items()}

    assert holding == {
        topology.INGRESS_QUEUE: 1,
        topology.agency_queue(HAMBURG): 1,
        f"{topology.agency_queue(NORDERSTEDT)}.dead": 1,
        f"{topology.agency_queue(GEWERBE)}.delay.{RETRY_SECONDS:g}s": 1,
        CONTROL_QUEUE: 1,
    }


def test_no_queue_holds_the_marker(queue_contents: dict[str, list[bytes]]) -> None:
    found = [
        name for name, bodies in queue_contents.items() if any(MARKER.encode() in b for b in bodies)
    ]

    assert found == []
    assert CONTROL.encode() in queue_contents[CONTROL_QUEUE][0]  # the reading sees content


def test_the_node_s_data_directory_holds_no_marker(
    queue_contents: dict[str, list[bytes]], rabbitmq: RabbitMQ
) -> None:
    assert rabbitmq.node is not None
    data = rabbitmq.node.base / "mnesia"
    files = [path for path in data.rglob("*") if path.is_file()]
    holding = {
        marker: [str(p.relative_to(data)) for p in files if marker.encode() in _read(p)]
        for marker in (MARKER, CONTROL)
    }

    assert holding[MARKER] == []
    assert holding[CONTROL], "the search sees what a quorum queue wrote to disk"


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:  # a file the node removed meanwhile
        return b""


def test_the_webhook_was_pushed_the_seal_only(scene: Scene) -> None:
    assert scene.hook.bodies
    for body in scene.hook.bodies:
        assert body.count(b".") == 4 and MARKER.encode() not in body
