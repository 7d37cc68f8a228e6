"""Datensparsamkeit: content of a message never reaches anything the broker keeps or says.

Messages carrying a unique marker in their content go through every path: accepted
(over AMQP and over HTTP), rejected as schema-invalid, rejected as tampered, and a
forged delivery receipt that is dead-lettered. Afterwards the marker must appear in no
log line, no file of the state folder (status store, audit trail, dedup store), no row
of the database (the stores on PostgreSQL, as ``pg_dump`` writes them), no metric and
no receipt. The module runs twice: with the stores in SQLite files, and in PostgreSQL.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import aio_pika
import httpx
import pytest
from lxml import etree
from prometheus_client import generate_latest

from broker.amqp import publishing, topology
from broker.app import party_signer
from broker.errors import Reason
from broker.logs import configure_logging
from broker.receipts.document import Receipt, build_receipt
from broker.stores.backend import Stores
from monitoring.labels import ReceiptKind
from tests.http_api_support import api_app, as_caller
from tests.polling import eventually
from tests.postgres_fixtures import postgres_dump, private_schema
from tests.test_receipts import ReceiptTap, receipt_tap
from tests.world import World, running_world
from xta_schemas.report import redact

TIMEOUT = 30.0
MARKER = f"Privatmarke{secrets.token_hex(8)}"


@pytest.fixture(scope="module")
def logs() -> Iterator[io.StringIO]:
    """Every log line of the module, as the broker writes them (JSON) at INFO."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    stream = io.StringIO()
    configure_logging("INFO", stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """Where the stores are: None for SQLite files, else a database URL of the module's."""
    if request.param == "sqlite":
        yield None
        return
    with private_schema(request.getfixturevalue("postgres_server")) as url:
        yield url


@pytest.fixture(scope="module")
async def world(
    amqp_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    logs: io.StringIO,
    database: str | None,
) -> AsyncIterator[World]:
    folder = tmp_path_factory.mktemp("privacy")
    async with running_world(amqp_url, folder, database_url=database) as running:
        yield running


@pytest.fixture(scope="module")
async def tap(world: World, amqp_url: str) -> AsyncIterator[ReceiptTap]:
    async with receipt_tap(amqp_url, world.settings.portal_kennung) as running:
        yield running


def _with_marker(world: World, sample: str, element: str) -> etree._Element:
    root = world.fresh(sample)
    (target,) = root.iter(element)
    target.text = MARKER
    return root


async def _accepted_over_amqp(world: World) -> str:
    root = _with_marker(world, "anmeldung-hamburg.xml", "familienname")
    uuid = await world.portal.submit(root)
    state = await world.portal.wait_final(uuid, TIMEOUT)
    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    return uuid


async def _accepted_over_http(world: World, amqp_url: str) -> str:
    body = world.portal_signer.sign(_with_marker(world, "gewerbe-anmeldung.xml", "vorname"))
    async with api_app(world, amqp_url) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.post(
                "/v1/messages", content=body, headers=as_caller(world.settings.portal_kennung)
            )
    uuid = str(response.json()["uuid"])
    await world.portal.wait_final(uuid, TIMEOUT)
    return uuid


async def _rejected_as_schema_invalid(world: World) -> str:
    root = _with_marker(world, "anmeldung-hamburg.xml", "geburtsdatum")
    uuid = await world.portal.submit(root)
    state = await world.portal.wait_final(uuid, TIMEOUT)
    assert [(r.kind, r.reason) for r in state.receipts] == [
        (ReceiptKind.REJECTED, Reason.SCHEMA_INVALID)
    ]
    return uuid


async def _rejected_as_tampered(world: World) -> str:
    root = world.fresh("anmeldung-hamburg.xml")
    uuid = world.uuid_of(root)
    signed = world.portal_signer.sign(root).replace(b"Petersen", MARKER.encode())
    await world.portal.submit(signed, sign=False)
    state = await world.portal.wait_final(uuid, TIMEOUT)
    assert [(r.kind, r.reason) for r in state.receipts] == [
        (ReceiptKind.REJECTED, Reason.DIGEST_MISMATCH)
    ]
    return uuid


async def _dead_lettered_delivery_receipt(world: World, amqp_url: str) -> None:
    """A delivery receipt altered after the agency signed it: refused, dead-lettered."""
    agency = "psw:02000000"
    signed = party_signer(world.settings, agency).sign(
        build_receipt(
            Receipt(
                ReceiptKind.DELIVERED,
                "6f1c2d3e-4a5b-4c6d-8e7f-001122334455",
                agency,
                datetime.now(UTC),
                author=world.settings.portal_kennung,
                nachrichtentyp="meldung.anmeldung.0200",
            )
        )
    )
    forged = signed.replace(b"meldung.anmeldung.0200", MARKER.encode())
    dead = f"{topology.DELIVERY_RECEIPT_QUEUE}.dead"
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        before = await _depth(channel, dead)
        exchange = await channel.get_exchange(topology.DELIVERY_RECEIPT_EXCHANGE, ensure=False)
        await publishing.publish_confirmed(
            exchange, publishing.message(forged, message_id="forged"), "delivered", 5.0
        )
        await eventually(
            lambda: _more_than(channel, dead, before), what=f"one more message in {dead}"
        )
    finally:
        await connection.close()


async def _depth(channel: aio_pika.abc.AbstractChannel, name: str) -> int:
    queue = await channel.declare_queue(name, passive=True)
    return int(queue.declaration_result.message_count or 0)


async def _more_than(channel: aio_pika.abc.AbstractChannel, name: str, count: int) -> bool:
    return await _depth(channel, name) > count


@pytest.fixture(scope="module")
async def every_path(world: World, tap: ReceiptTap, amqp_url: str) -> list[str]:
    """Send the marker down every path once; return the UUIDs of the messages."""
    uuids = [
        await _accepted_over_amqp(world),
        await _accepted_over_http(world, amqp_url),
        await _rejected_as_schema_invalid(world),
        await _rejected_as_tampered(world),
    ]
    await _dead_lettered_delivery_receipt(world, amqp_url)
    await tap.caught_up()
    return uuids


def test_the_marker_is_in_no_log_line(every_path: list[str], logs: io.StringIO) -> None:
    written = logs.getvalue()

    assert every_path[0] in written, "the capture saw the broker's events"
    assert MARKER not in written, [line for line in written.splitlines() if MARKER in line]


def test_debug_logging_keeps_signxml_quiet() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("DEBUG", io.StringIO())
        assert not logging.getLogger("signxml").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def test_the_marker_is_in_no_file_of_the_state_folder(every_path: list[str], world: World) -> None:
    pki = world.settings.pki
    files = [p for p in world.settings.state_dir.rglob("*") if p.is_file() and pki not in p.parents]
    names = {p.name for p in files}

    kept = {"audit.jsonl"}
    if world.settings.database_url is None:
        kept |= {"status.sqlite3", "dedup.sqlite3"}
    assert kept <= names
    for path in files:
        assert MARKER.encode() not in path.read_bytes(), path


def test_the_marker_is_in_no_store(every_path: list[str], world: World) -> None:
    # Every byte the dedup and status stores keep: their files, or the database's rows.
    url = world.settings.database_url
    if url is None:
        files = sorted(world.settings.state_dir.glob("*.sqlite3*"))  # with their WAL files
        kept = b"".join(path.read_bytes() for path in files)
    else:
        kept = postgres_dump(url)

    for uuid in every_path:
        assert uuid.encode() in kept, f"{uuid}: not in what was searched"
    assert MARKER.encode() not in kept


async def test_the_status_store_and_audit_trail_know_every_message(
    every_path: list[str], world: World
) -> None:
    stores = Stores(world.settings)
    trail = world.settings.audit_path.read_text()

    try:
        for uuid in every_path:
            assert (await stores.status().timeline(uuid)).events, uuid
            assert uuid in trail
    finally:
        await stores.close()


def test_the_marker_is_in_no_metric(every_path: list[str], world: World) -> None:
    assert MARKER.encode() not in generate_latest(world.registry)


def test_the_marker_is_in_no_receipt(every_path: list[str], tap: ReceiptTap) -> None:
    assert len(tap.bodies) >= 6  # 2 accepted, 2 delivered, 2 rejected
    for body in tap.bodies:
        assert MARKER.encode() not in body


@pytest.mark.parametrize(
    "message",
    [
        f"Element 'geburtsdatum': '{MARKER}' is not a valid value of the atomic type 'xs:date'.",
        f"Element 'plz': [facet 'pattern'] The value '{MARKER}' is not accepted by the pattern "
        "'[0-9]{5}'.",
        f"Element 'code': [facet 'enumeration'] The value '{MARKER}' is not an element of the "
        "set {'m', 'w'}.",
    ],
)
def test_libxml2_reports_lose_the_value_but_keep_the_rule(message: str) -> None:
    redacted = redact(message)

    assert MARKER not in redacted
    assert redacted.split("'")[1] in {"geburtsdatum", "plz", "code"}
    assert ("xs:date" in redacted) or ("[0-9]{5}" in redacted) or ("{'m', 'w'}" in redacted)
