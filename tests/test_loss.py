"""Nothing is lost and nothing is delivered twice when a worker or RabbitMQ dies mid-run.

5,000 trade registrations, each fanned out to three agencies (the trade office, which
is responsible, and the tax office and the chamber of commerce, which are notified).
The broker worker runs as a separate process, as in production. The agencies and the
portal run here and count what they see.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker import devnode
from broker.app import load_parts, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.sdk.agency import Delivery, default_seen_path
from broker.sdk.portal import Portal
from broker.settings import Settings, load_settings
from tests.polling import eventually
from tests.world import agency_client, fan_out_directory, publish_all, signed_messages

# The tests wait for as long as the run makes progress (`STALL`), so on a busy machine
# a run may outlast pytest-timeout's default of 300 s. Its alarm would land in whatever
# callback runs, an agency's handler, and leave a copy unacked for good; the bound here
# only guards against a hang.
pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = 5000
RECIPIENTS = ("gew:02000000", "fa:02000000", "ihk:02000000")


@dataclass
class Run:
    settings: Settings
    config: Path
    amqp_url: str
    portal: Portal
    handled: Counter[tuple[str, str]] = field(default_factory=Counter)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_worker(self) -> subprocess.Popen[bytes]:
        env = dict(os.environ, XBROKER_AMQP_URL=self.amqp_url)
        log = (self.settings.state_dir / f"worker-{len(self.workers)}.log").open("wb")
        worker = subprocess.Popen(
            [sys.executable, "-m", "broker.cli", "--config", str(self.config), "run"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers.append(worker)
        return worker

    def delivered(self) -> int:
        return sum(self.handled.values())


@asynccontextmanager
async def fan_out_world(amqp_url: str, tmp: Path) -> AsyncIterator[Run]:
    directory = fan_out_directory(tmp)
    config = tmp / "xbroker.toml"
    config.write_text(
        f'state_dir = "{tmp / "state"}"\n'
        f'directory = "{directory}"\n'
        "metrics_port = 0\nprefetch = 64\nshutdown_grace_seconds = 5\n",
        encoding="utf-8",
    )
    settings = load_settings(config, amqp_url=amqp_url)
    ensure_dev_pki(settings)
    parts = load_parts(settings)
    # This process runs the portal and three agencies on one event loop, verifying every
    # copy and receipt; on a loaded machine a confirm waits behind that work for longer
    # than the SDK's default of 5 s, and every publish repeated then adds a duplicate
    # receipt to verify, which slows the confirms further.
    portal = Portal(
        amqp_url,
        settings.portal_kennung,
        party_signer(settings, settings.portal_kennung),
        parts.verifier(),
        confirm_timeout=30.0,
    )
    run = Run(settings, config, amqp_url, portal)
    agencies = []
    for kennung in RECIPIENTS:

        async def handle(delivery: Delivery, kennung: str = kennung) -> None:
            run.handled[(kennung, delivery.uuid)] += 1

        client = agency_client(
            amqp_url, settings, parts, kennung, handle, default_seen_path(kennung, tmp)
        )
        agencies.append(client)
    run.start_worker()
    try:
        await eventually(
            lambda: _queues_declared(amqp_url), what="the worker's queues declared", timeout=60
        )
        for client in agencies:
            await client.start()
        await portal.start()
        yield run
    finally:
        await portal.close()
        for client in agencies:
            await client.close()
        for worker in run.workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
                worker.wait(30)


async def _queues_declared(amqp_url: str) -> bool:
    import aio_pika

    try:
        connection = await aio_pika.connect(amqp_url)
    except Exception:
        return False
    try:
        channel = await connection.channel()
        await channel.declare_queue("agency.ihk:02000000.inbox", passive=True)
        return True
    except Exception:
        return False
    finally:
        await connection.close()


STALL = 120.0
"""Seconds without progress after which a wait fails: on a busy machine the run is slow,
and waited for as long as it moves; a copy that is lost stops it for good."""


async def _a_quarter_handled(run: Run) -> None:
    await _unless_stalled(
        run,
        eventually(
            run.delivered,
            until=lambda n: n >= MESSAGES * len(RECIPIENTS) // 4,
            what="a quarter of the copies handled",
            timeout=STALL,
            interval=0.2,
            progressing=True,
        ),
    )


async def _all_final(run: Run, uuids: list[str]) -> None:
    def final() -> tuple[int, int]:
        return run.delivered(), sum(run.portal.state(u).final for u in uuids)

    await _unless_stalled(
        run,
        eventually(
            final,
            until=lambda seen: seen[1] == len(uuids),
            what="every message final at the portal (copies handled, messages final)",
            timeout=STALL,
            interval=0.5,
            progressing=True,
        ),
    )


async def _unless_stalled(run: Run, wait: Awaitable[object]) -> None:
    """Wait; when the run stalls, fail with what the agencies and the workers saw."""
    try:
        await wait
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{_what_was_seen(run)}") from None


def _what_was_seen(run: Run) -> str:
    per_agency = Counter(kennung for kennung, _ in run.handled)
    twice = sum(1 for n in run.handled.values() if n > 1)
    workers = ", ".join(
        f"worker-{i}: {'running' if w.poll() is None else f'exited {w.returncode}'}"
        for i, w in enumerate(run.workers)
    )
    return (
        f"copies handled per agency: {dict(per_agency)} of {MESSAGES} each; "
        f"handled more than once: {twice}; {workers}; logs in {run.settings.state_dir}"
    )


def _assert_exactly_once(run: Run, uuids: list[str]) -> None:
    expected = {(k, u) for u in uuids for k in RECIPIENTS}
    missing = expected - set(run.handled)
    twice = {key: n for key, n in run.handled.items() if n != 1}
    assert not missing, f"{len(missing)} copies never reached their agency"
    assert not twice, f"{len(twice)} copies were handled more than once"
    assert set(run.handled) == expected
    not_final = [u for u in uuids if not run.portal.state(u).final]
    assert not not_final, f"{len(not_final)} messages without a final receipt"
    for uuid in uuids:
        kinds = Counter(r.kind.value for r in run.portal.state(uuid).receipts)
        # A publish repeated after a lost confirm may add a duplicate receipt; the
        # message itself must be accepted once and delivered by every recipient.
        assert (kinds["accepted"], kinds["delivered"]) == (1, 3), (uuid, kinds)
        assert not kinds.keys() & {"rejected", "failed"}, (uuid, kinds)


async def test_worker_killed_mid_run_loses_and_duplicates_nothing(
    amqp_url: str, tmp_path: Path
) -> None:
    async with fan_out_world(amqp_url, tmp_path) as run:
        messages = await asyncio.to_thread(signed_messages, run.settings, MESSAGES)
        uuids = [u for u, _ in messages]
        bodies = [body for _, body in messages]
        publishing = asyncio.create_task(publish_all(run.portal, bodies))
        await _a_quarter_handled(run)

        run.workers[-1].send_signal(signal.SIGKILL)
        run.workers[-1].wait(10)
        killed_at = run.delivered()
        run.start_worker()
        await publishing
        await _all_final(run, uuids)

        assert killed_at < MESSAGES * len(RECIPIENTS), "the kill came in the middle"
        _assert_exactly_once(run, uuids)


async def test_rabbitmq_restarted_mid_run_loses_and_duplicates_nothing(
    amqp_url: str, local_node: object, tmp_path: Path
) -> None:
    async with fan_out_world(amqp_url, tmp_path) as run:
        messages = await asyncio.to_thread(signed_messages, run.settings, MESSAGES)
        uuids = [u for u, _ in messages]
        bodies = [body for _, body in messages]
        publishing = asyncio.create_task(publish_all(run.portal, bodies))
        await _a_quarter_handled(run)

        await asyncio.to_thread(devnode.stop_node, ROOT)
        stopped_at = run.delivered()
        await asyncio.to_thread(devnode.ensure_node, ROOT)
        await publishing
        await _all_final(run, uuids)

        assert run.workers[-1].poll() is None, "the worker reconnected by itself"
        assert len(run.workers) == 1
        assert stopped_at < MESSAGES * len(RECIPIENTS), "the restart came in the middle"
        _assert_exactly_once(run, uuids)
