"""Specification of graceful shutdown: SIGTERM during a run of 2,000 messages loses none.

``xbroker run`` runs as a subprocess with a settings file of the test's own (a vhost,
state folder and development PKI of its own). The portal SDK publishes 2,000 signed
submissions; they wait in the ingress queue, a worker starts, and once a few hundred are
accepted it gets SIGTERM; a second worker
takes over. Every message must reach its agency (counted by what the agency SDK handed
over, not by queue counters) and every author must hold a final receipt. The first worker
must exit 0 within its grace period and log why and that it stopped.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from broker.amqp import topology
from broker.app import load_parts, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.receipts.document import Receipt
from broker.sdk.agency import IN_MEMORY, Delivery
from broker.sdk.portal import Portal
from broker.settings import Settings, load_settings
from monitoring.labels import ReceiptKind
from routing import Directory
from signing import parse_untrusted
from tests.conftest import free_port
from tests.polling import eventually
from tests.world import agency_client
from xta_schemas.samples import with_fresh_header

pytestmark = pytest.mark.rabbitmq

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLE = EXAMPLES / "submissions" / "anmeldung-hamburg.xml"
AGENCY = "psw:02000000"
MESSAGES = 2000
PUBLISH_BATCH = 100  # confirmed publishes in flight at once
SIGTERM_AFTER = 300  # accepted receipts seen before the first worker is stopped
GRACE = 10.0
TIMEOUT = 180.0


@pytest.fixture(scope="module")
def vhost_url(module_vhost_url: str) -> str:
    return module_vhost_url


async def declare_topology(settings: Settings, directory: Directory) -> None:
    """What ``xbroker run`` declares at start, declared before any worker runs."""
    connection = await aio_pika.connect(settings.amqp_url)
    async with connection:
        channel = await connection.channel()
        exchanges = await topology.declare_core(channel, settings.delivery_limit)
        await topology.declare_for_directory(channel, exchanges, directory, settings.delivery_limit)


@dataclass
class Worker:
    """One ``xbroker run`` subprocess and where its JSON log goes."""

    process: asyncio.subprocess.Process
    log: Path
    metrics_url: str

    def events(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]


async def start_worker(config: Path, log: Path, port: int) -> Worker:
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "broker.cli",
            "--config",
            str(config),
            "run",
            stdout=out,
            stderr=out,
        )
    worker = Worker(process, log, f"http://127.0.0.1:{port}")
    async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:

        async def ready() -> bool:
            if process.returncode is not None:
                output = await asyncio.to_thread(log.read_text)
                raise AssertionError(f"worker exited at start:\n{output}")
            return (await http.get(f"{worker.metrics_url}/readyz")).status_code == 200

        await eventually(
            ready,
            what="the worker ready",
            timeout=60,
            interval=0.2,
            ignoring=(httpx.TransportError,),  # not listening yet
        )
    return worker


async def stop_worker(worker: Worker) -> tuple[int, float]:
    """SIGTERM; the exit code and how long the worker took to exit."""
    started = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    try:
        code = await asyncio.wait_for(worker.process.wait(), GRACE + 20)
    except TimeoutError:
        worker.process.kill()
        await worker.process.wait()
        raise
    return code, time.monotonic() - started


@dataclass
class Run:
    sent: list[str]
    handed_over: dict[str, int]
    receipts: dict[str, list[ReceiptKind]]
    final: set[str]
    exit_code: int
    exit_seconds: float
    accepted_before_sigterm: int
    first_worker: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture(scope="module")
async def run(vhost_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    tmp = tmp_path_factory.mktemp("shutdown")
    port = free_port()
    config = tmp / "xbroker.toml"
    config.write_text(
        f'amqp_url = "{vhost_url}"\n'
        f'state_dir = "{tmp / "state"}"\n'
        f'directory = "{EXAMPLES / "directory.toml"}"\n'
        f"metrics_port = {port}\n"
        f"shutdown_grace_seconds = {GRACE}\n",
        encoding="utf-8",
    )
    settings: Settings = load_settings(config)
    ensure_dev_pki(settings)
    parts = load_parts(settings)
    standard, _ = parts.catalog.identify(parse_untrusted(SAMPLE.read_bytes()))

    handed_over: dict[str, int] = {}
    receipts: dict[str, list[ReceiptKind]] = {}
    accepted = asyncio.Event()

    async def handle(delivery: Delivery) -> None:
        handed_over[delivery.uuid] = handed_over.get(delivery.uuid, 0) + 1

    def on_receipt(receipt: Receipt) -> None:
        receipts.setdefault(receipt.nachrichten_uuid, []).append(receipt.kind)
        if sum(ReceiptKind.ACCEPTED in kinds for kinds in receipts.values()) >= SIGTERM_AFTER:
            accepted.set()

    await declare_topology(settings, parts.directory)
    agency = agency_client(vhost_url, settings, parts, AGENCY, handle, IN_MEMORY)
    portal = Portal(
        vhost_url,
        settings.portal_kennung,
        party_signer(settings, settings.portal_kennung),
        parts.verifier(),
        on_receipt=on_receipt,
    )
    await agency.start()
    await portal.start()
    first: Worker | None = None
    second: Worker | None = None
    try:
        # All 2,000 wait in the ingress queue before the first worker starts, so that
        # the SIGTERM falls in the middle of its run, not of the publishing.
        root = parse_untrusted(SAMPLE.read_bytes())
        sent: list[str] = []
        for _ in range(0, MESSAGES, PUBLISH_BATCH):
            batch = [with_fresh_header(root, standard) for _ in range(PUBLISH_BATCH)]
            sent += await asyncio.gather(*(portal.submit(doc) for doc in batch))
        first = await start_worker(config, tmp / "worker-1.log", port)
        await asyncio.wait_for(accepted.wait(), TIMEOUT)
        accepted_before = sum(ReceiptKind.ACCEPTED in kinds for kinds in receipts.values())
        code, seconds = await stop_worker(first)
        second = await start_worker(config, tmp / "worker-2.log", port)
        final: set[str] = set()
        deadline = time.monotonic() + TIMEOUT
        for uuid in sent:
            try:
                await portal.wait_final(uuid, max(deadline - time.monotonic(), 0.1))
                final.add(uuid)
            except TimeoutError:
                pass
        yield Run(
            sent=sent,
            handed_over=handed_over,
            receipts=receipts,
            final=final,
            exit_code=code,
            exit_seconds=seconds,
            accepted_before_sigterm=accepted_before,
            first_worker=first.events(),
        )
    finally:
        await portal.close()
        await agency.close()
        for worker in (first, second):
            if worker is not None and worker.process.returncode is None:
                await stop_worker(worker)


def test_sigterm_came_in_the_middle_of_the_run(run: Run) -> None:
    assert SIGTERM_AFTER <= run.accepted_before_sigterm < MESSAGES


def test_every_message_reached_its_agency(run: Run) -> None:
    missing = [uuid for uuid in run.sent if uuid not in run.handed_over]
    assert missing == []


def test_no_message_was_handed_to_the_agency_twice(run: Run) -> None:
    assert [uuid for uuid, times in run.handed_over.items() if times > 1] == []


def test_every_author_got_a_final_receipt(run: Run) -> None:
    assert len(run.final) == MESSAGES
    assert [u for u in run.sent if ReceiptKind.REJECTED in run.receipts.get(u, [])] == []


def test_the_stopped_worker_exited_0_within_its_grace_period(run: Run) -> None:
    assert run.exit_code == 0
    assert run.exit_seconds < GRACE + 5  # the grace, plus closing the connection


def test_the_stopped_worker_logged_the_signal_and_its_stop(run: Run) -> None:
    names = [entry["event"] for entry in run.first_worker]
    assert "broker.signal" in names
    assert names.index("broker.signal") < names.index("broker.stopped")
    (signal_entry,) = [e for e in run.first_worker if e["event"] == "broker.signal"]
    assert signal_entry["signal"] == "SIGTERM"
