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
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from prometheus_client import CollectorRegistry

from broker.errors import StoreError, TransientError
from broker.settings import Settings, load_settings
from broker.stores.backend import Stores
from broker.stores.dedup import ClaimState
from broker.stores.journal import EventKind, Journals, StatusEvent
from tests.polling import eventually
from tests.worker_support import EXAMPLES, event_kinds, one_agency, worker, worker_settings

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


def _outage_settings(amqp_url: str, state_dir: Path, database_url: str) -> Settings:
    """The worker's settings with short database timeouts: an outage shows at once."""
    return worker_settings(
        amqp_url,
        state_dir,
        database_url,
        database_statement_timeout_seconds=2.0,
        database_connect_timeout_seconds=2.0,
    )


@pytest.mark.rabbitmq
async def test_an_outage_pauses_the_worker_which_holds_its_message_and_resumes_by_itself(
    relay: tuple[Relay, str], amqp_url: str, tmp_path: Path
) -> None:
    cut, url = relay
    settings = _outage_settings(amqp_url, tmp_path, url)
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


class Stalled:
    """A journal whose first write of an accepted message waits for ``go``, then fails:
    it holds a message open between its claim and the claim's completion."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def record(self, event: StatusEvent) -> None:
        await self.record_many((event,))

    async def record_many(self, events: Sequence[StatusEvent]) -> None:
        if not self.entered.is_set() and any(e.kind is EventKind.ACCEPTED for e in events):
            self.entered.set()
            await self.go.wait()
            raise OSError("disk full")


def _accepted(caplog: pytest.LogCaptureFixture, uuid: str) -> list[bool]:
    """Whether each acceptance of ``uuid`` logged was a RETRY."""
    return [
        bool(facts["retry"])
        for record in caplog.records
        if record.getMessage() == "message.accepted"
        and (facts := getattr(record, "xbroker_facts", {})).get("uuid") == uuid
    ]


@pytest.mark.rabbitmq
async def test_a_claim_left_held_at_a_stop_during_an_outage_is_retried_by_another_worker(
    relay: tuple[Relay, str], amqp_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The stopping worker cannot give its claim up: the database is unreachable. The claim
    # names the worker's server session, which the outage ended, so once the database
    # answers again another worker finds its holder gone and delivers the message.
    caplog.set_level(logging.INFO, logger="xbroker")
    cut, url = relay
    settings = _outage_settings(amqp_url, tmp_path, url)
    stalled = Stalled()
    first_stores, second_stores = Stores(settings), Stores(settings)
    env = one_agency(
        settings,
        dedup=first_stores.dedup(),
        journal=Journals([first_stores.status(), stalled]),  # type: ignore[list-item]
    )
    first, portal, agency, handled = env.broker, env.portal, env.agency, env.handled
    second = worker(
        env.parts, CollectorRegistry(), dedup=second_stores.dedup(), journal=second_stores.status()
    )
    await first.start()
    await portal.start()
    await agency.start()
    try:
        uuid = await portal.submit(env.sample())
        await asyncio.wait_for(stalled.entered.wait(), 60)  # claimed, its copies published
        await cut.cut()
        stalled.go.set()
        await eventually(
            lambda: first.faults.held, until=lambda held: held >= 1, what="the message held"
        )
        await first.stop()
        await first_stores.close()
        assert "dedup.abandon_failed" in caplog.text  # the claim was not given up
        assert _accepted(caplog, uuid) == [False]  # copies published, never acked

        await cut.start()
        await second.start()
        await eventually(
            lambda: _accepted(caplog, uuid),
            until=lambda accepted: len(accepted) > 1,
            what="the message accepted again",
            timeout=60,
        )

        async def claim_state() -> ClaimState:
            laufzettel = await second_stores.status().timeline(uuid)
            digest = next(e.digest for e in laufzettel.events if e.digest)
            return (await second_stores.dedup().claim(PORTAL, uuid, digest)).state

        await eventually(
            claim_state,
            until=lambda state: state is ClaimState.DUPLICATE,
            ignoring=(StoreError,),
            what="the claim completed",
            timeout=60,
        )
        await eventually(lambda: handled, until=lambda got: got == [uuid], what="the copy")
    finally:
        await portal.close()
        await agency.close()
        await second.stop()
        await second_stores.close()

    assert _accepted(caplog, uuid) == [False, True]  # taken over as a RETRY, once
    assert handled == [uuid]  # the agency's handler sees it once
