"""A database that stops answering is a fault of the surroundings: the stores raise
StoreError (a TransientError, as the SQLite stores do for theirs) and resume by
themselves once it answers again; the worker holds its message meanwhile, pauses (not
ready) and resumes by itself, and the message is delivered once, never dead-lettered.

The outage is real: the stores reach the server through a TCP relay on loopback that
the test cuts (every connection dropped, new ones refused) and restores.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from broker.errors import StoreError, TransientError
from broker.settings import load_settings
from broker.stores.backend import Stores
from broker.stores.journal import EventKind, StatusEvent
from tests.polling import eventually
from tests.worker_support import EXAMPLES, event_kinds, one_agency, worker_settings

UUID = "6f1c2d3e-4a5b-4c6d-8e7f-001122334455"
PORTAL = "osi:hh-portal"


class Relay:
    """Forwards TCP connections to the server while it is up; cut, it drops them all."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()
        self._pipes.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes |= {writer, up_writer}
        await asyncio.gather(
            _pipe(reader, up_writer), _pipe(up_reader, writer), return_exceptions=True
        )
        self._pipes -= {writer, up_writer}


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        with contextlib.suppress(Exception):
            writer.close()


@pytest.fixture
async def relay(database_url: str) -> AsyncIterator[tuple[Relay, str]]:
    parts = urlsplit(database_url)
    assert parts.hostname is not None and parts.port is not None
    running = Relay(parts.hostname, parts.port)
    await running.start()
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{running.port}"
    yield running, urlunsplit(parts._replace(netloc=netloc))
    await running.cut()


async def test_an_outage_raises_store_errors_and_the_stores_resume_by_themselves(
    relay: tuple[Relay, str], tmp_path: Path
) -> None:
    cut, url = relay
    settings = load_settings(
        EXAMPLES / "xbroker.toml",
        state_dir=tmp_path,
        database_url=url,
        database_statement_timeout_seconds=2.0,
        database_connect_timeout_seconds=2.0,
    )
    stores = Stores(settings)
    status, dedup = stores.status(), stores.dedup()
    try:
        await status.record(StatusEvent(UUID, EventKind.RECEIVED, author=PORTAL))

        await cut.cut()
        with pytest.raises(StoreError) as failed:
            await status.record(StatusEvent(UUID, EventKind.ACCEPTED, author=PORTAL))
        with pytest.raises(StoreError):
            await dedup.claim(PORTAL, UUID, "ab" * 32)
        # What the worker requeues and waits out, never a dead letter.
        assert isinstance(failed.value, TransientError)

        await cut.start()  # the server answers again, at the same address
        await eventually(
            lambda: status.timeline(UUID), ignoring=(StoreError,), what="a read after it"
        )
        await status.record(StatusEvent(UUID, EventKind.ACCEPTED, author=PORTAL))
        claim = await dedup.claim(PORTAL, UUID, "ab" * 32)
        kinds = [e.kind for e in (await status.timeline(UUID)).events]
    finally:
        await stores.close()

    assert kinds == [EventKind.RECEIVED, EventKind.ACCEPTED]
    assert claim.held


@pytest.mark.rabbitmq
async def test_an_outage_pauses_the_worker_which_holds_its_message_and_resumes_by_itself(
    relay: tuple[Relay, str], amqp_url: str, tmp_path: Path
) -> None:
    cut, url = relay
    settings = worker_settings(
        amqp_url,
        tmp_path,
        url,
        database_statement_timeout_seconds=2.0,
        database_connect_timeout_seconds=2.0,
    )
    stores = Stores(settings)
    status = stores.status()
    world = one_agency(settings, dedup=stores.dedup(), journal=status)
    broker, handled = world.broker, world.handled

    await broker.start()
    await world.portal.start()
    await world.agency.start()
    try:
        await cut.cut()
        uuid = await world.portal.submit(world.sample())
        await eventually(
            lambda: (broker.faults.held, broker.readiness()),
            until=lambda state: (
                state[0] >= 1 and not state[1]["store"] and not state[1]["consuming"]
            ),
            what="the message held and the worker paused, not ready",
            timeout=60,
        )
        assert "store" in broker.not_ready_because()
        assert handled == []

        await cut.start()  # the server answers again
        await eventually(
            lambda: handled,
            until=lambda got: got == [uuid],
            what="the copy delivered after the outage",
            timeout=60,
        )
        await eventually(
            lambda: broker.readiness(),
            until=lambda checks: checks["store"] and checks["consuming"],
            what="the worker ready again",
            timeout=60,
        )
        await eventually(
            lambda: event_kinds(status, uuid),
            until=lambda seen: EventKind.ACCEPTED in seen,
            ignoring=(StoreError,),
            what="the accepted event",
            timeout=60,
        )
        seen = await event_kinds(status, uuid)
    finally:
        await world.close()
        await stores.close()

    # Taken once from the ingress queue: held through the outage, not returned to it.
    assert seen.count(EventKind.RECEIVED) == 1
    assert seen.count(EventKind.ACCEPTED) == 1
    assert EventKind.FAILED not in seen
    assert handled == [uuid]
    registry = world.registry
    began = registry.get_sample_value("xbroker_faults_total", {"fault": "store"})
    assert began is not None and began >= 1
    assert registry.get_sample_value("xbroker_fault_active", {"fault": "store"}) == 0
