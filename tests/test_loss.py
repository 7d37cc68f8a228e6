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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from broker import devnode
from broker.app import load_parts, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.errors import PublishError
from broker.sdk.agency import AgencyClient, Delivery
from broker.sdk.portal import Portal
from broker.settings import Settings, load_settings
from signing import parse_untrusted
from tests.polling import eventually
from tests.world import EXAMPLES, SUBMISSIONS
from xta_schemas.samples import with_fresh_header

# The tests' own deadlines (the worker's queues 60 s, a quarter of the copies 300 s, every
# message final 600 s) outlast pytest-timeout's default of 300 s on a busy machine. Its
# alarm would land in whatever callback runs, an agency's handler, and leave a copy
# unacked for good; the bound here only guards against a hang.
pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[1]
MESSAGES = 5000
RECIPIENTS = ("gew:02000000", "fa:02000000", "ihk:02000000")
NOTIFIED = """
[[agency]]
kennung = "fa:02000000"
name = "Finanzamt Hamburg"
certificates = ["fa_02000000.crt"]
notify = ["gewerbe.anmeldung.*"]

[[agency]]
kennung = "ihk:02000000"
name = "Handelskammer Hamburg"
certificates = ["ihk_02000000.crt"]
notify = ["gewerbe.anmeldung.0100"]
"""


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
    directory = tmp / "directory.toml"
    directory.write_text(
        (EXAMPLES / "directory.toml").read_text(encoding="utf-8") + NOTIFIED, encoding="utf-8"
    )
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
    portal = Portal(
        amqp_url,
        settings.portal_kennung,
        party_signer(settings, settings.portal_kennung),
        parts.verifier(),
    )
    run = Run(settings, config, amqp_url, portal)
    agencies = []
    for kennung in RECIPIENTS:

        async def handle(delivery: Delivery, kennung: str = kennung) -> None:
            run.handled[(kennung, delivery.uuid)] += 1

        client = AgencyClient(
            amqp_url, kennung, party_signer(settings, kennung), parts.verifier(), handle
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


def _signed_messages(run: Run, count: int) -> list[tuple[str, bytes]]:
    parts = load_parts(run.settings)
    root = parse_untrusted((SUBMISSIONS / "gewerbe-anmeldung.xml").read_bytes())
    standard, _ = parts.catalog.identify(root)
    signer = party_signer(run.settings, run.settings.portal_kennung)
    out = []
    for _ in range(count):
        fresh = with_fresh_header(root, standard)
        out.append((standard.header(fresh).uuid, signer.sign(fresh)))
    return out


async def _publish_all(run: Run, messages: list[tuple[str, bytes]]) -> None:
    """Publish every message; a publish that fails or times out is repeated (the broker
    deduplicates), as a portal must."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for _, body in messages:
        queue.put_nowait(body)

    async def publisher() -> None:
        while not queue.empty():
            body = queue.get_nowait()
            while True:
                try:
                    await run.portal.submit(body, sign=False)
                    break
                except (PublishError, ConnectionError, RuntimeError):
                    await asyncio.sleep(0.5)

    await asyncio.gather(*(publisher() for _ in range(16)))


async def _a_quarter_handled(run: Run) -> None:
    await eventually(
        _at_least(run, MESSAGES * len(RECIPIENTS) // 4),
        what="a quarter of the copies handled",
        timeout=300,
    )


async def _all_final(run: Run, uuids: list[str]) -> None:
    await eventually(
        lambda: all(run.portal.state(u).final for u in uuids),
        what="every message final at the portal",
        timeout=600,
        interval=0.5,
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
        messages = await asyncio.to_thread(_signed_messages, run, MESSAGES)
        uuids = [u for u, _ in messages]
        publishing = asyncio.create_task(_publish_all(run, messages))
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
        messages = await asyncio.to_thread(_signed_messages, run, MESSAGES)
        uuids = [u for u, _ in messages]
        publishing = asyncio.create_task(_publish_all(run, messages))
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


def _at_least(run: Run, copies: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return run.delivered() >= copies

    return check
