"""A run of the fault suite: workers and agencies as processes, the portal here.

Each scenario publishes `MESSAGES` trade registrations, each fanned out to three agencies
(the trade office, responsible; the tax office and the chamber of commerce, notified),
into the ingress queue before its workers start, so that the workers are busy when the
fault comes; it injects its fault once the workers have accepted a quarter of them, lifts it
after `FAULT_SECONDS`, and then checks the promise as the agencies and the portal saw it:
every copy handled once by its agency's handler (none lost, none twice), every message
with exactly one final outcome at the portal (accepted, then delivered by all three; no
``failed``, no ``rejected``), every queue of the vhost empty, ``xbroker audit verify`` OK,
and every worker alive until it was stopped and exiting 0 then.

The workers run as ``xbroker run`` processes, as in production, with every URL they are
given (``XBROKER_AMQP_URLS``) and a metrics port of their own so that a scenario can
watch their ``/readyz``. Each agency runs in a process of its own too (`agency_runner`),
writing what its handler was given to a file the run counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker import cli
from broker.app import load_parts, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.sdk.portal import Portal
from broker.settings import Settings, load_settings
from tests.conftest import free_port
from tests.faults.processes import Agency, Worker
from tests.polling import eventually
from tests.world import fan_out_directory, publish_all, signed_messages

MESSAGES = 1000
FAULT_SECONDS = 20.0
RECIPIENTS = ("gew:02000000", "fa:02000000", "ihk:02000000")
STALL = 120.0
"""Seconds without progress after which a wait fails: a loaded machine makes a run slow,
which is waited for as long as it moves; a lost message stops it for good."""

Queues = Callable[[], Awaitable[dict[str, int]]]
"""Every queue of the run's vhost and how many messages it holds."""


@dataclass(frozen=True)
class Vhost:
    """A scenario's own vhost: its URL, name and queues."""

    url: str
    name: str
    queues: Queues


@dataclass
class FaultRun:
    settings: Settings
    config: Path
    urls: tuple[str, ...]
    portal: Portal
    agencies: list[Agency]
    logs: Path
    workers: list[Worker] = field(default_factory=list)
    agency_stats: list[dict[str, int]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    phases: dict[str, float] = field(default_factory=dict)
    uuids: list[str] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)

    # workers

    def start_worker(self, urls: Sequence[str] | None = None, **env: str) -> Worker:
        urls = tuple(urls or self.urls)
        port = free_port()
        log = self.logs / f"worker-{len(self.workers)}.log"
        environment = dict(
            os.environ,
            XBROKER_AMQP_URLS=",".join(urls),
            XBROKER_METRICS_PORT=str(port),
            **env,
        )
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "broker.cli", "--config", str(self.config), "run"],
                env=environment,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(process, log, port, urls)
        self.workers.append(worker)
        return worker

    def assert_workers_alive(self) -> None:
        for worker in self.workers:
            code = worker.process.poll()
            assert code is None or code == 0, f"{worker.log.name} died with {code}"

    def stop_workers(self) -> list[int]:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        return [worker.stop() for worker in self.workers]

    # traffic

    async def sign(self, count: int = MESSAGES) -> None:
        signed = await asyncio.to_thread(signed_messages, self.settings, count)
        self.uuids = [uuid for uuid, _ in signed]
        self.bodies = [body for _, body in signed]

    async def publish_all(self) -> None:
        await publish_all(self.portal, self.bodies, publishers=64)

    @property
    def handled(self) -> Counter[tuple[str, str]]:
        """How often each agency's handler was given each message."""
        return Counter((a.kennung, uuid) for a in self.agencies for uuid in a.handled())

    def delivered(self) -> int:
        return sum(len(a.handled()) for a in self.agencies)

    async def until_share_accepted(self, share: float) -> None:
        """Until the workers have accepted ``share`` of the messages (they run ahead of
        the agencies: a fault injected then meets them at work)."""
        wanted = len(self.uuids) * share

        async def accepted() -> float:
            return sum([await w.metric("xbroker_messages_accepted_total") for w in self.workers])

        await eventually(
            accepted,
            until=lambda n: n >= wanted,
            what=f"{wanted:.0f} messages accepted",
            timeout=STALL,
            interval=0.2,
            progressing=True,
        )

    async def until_all_final(self) -> None:
        def seen() -> tuple[int, int]:
            """Copies handled, messages final: either moving is progress."""
            return self.delivered(), sum(self.portal.state(u).final for u in self.uuids)

        try:
            await eventually(
                seen,
                until=lambda counts: counts[1] == len(self.uuids),
                what="every message final at the portal",
                timeout=STALL,
                interval=0.5,
                progressing=True,
            )
        except AssertionError as exc:
            missing = [u for u in self.uuids if not self.portal.state(u).final]
            raise AssertionError(
                f"{exc}: {len(missing)} of {len(self.uuids)} messages not final, "
                f"{self.delivered()} copies handled; logs in {self.logs}"
            ) from None

    # the promise

    def assert_exactly_once(self) -> None:
        expected = {(k, u) for u in self.uuids for k in RECIPIENTS}
        missing = expected - set(self.handled)
        twice = {key: n for key, n in self.handled.items() if n != 1}
        assert not missing, f"{len(missing)} copies never reached their agency"
        assert not twice, f"{len(twice)} copies were handled more than once"
        assert set(self.handled) == expected
        for uuid in self.uuids:
            state = self.portal.state(uuid)
            kinds = Counter(r.kind.value for r in state.receipts)
            assert state.final, uuid
            # A publish repeated after a lost confirm may add a duplicate receipt; the
            # message itself is accepted once and delivered by every recipient.
            assert (kinds["accepted"], kinds["delivered"]) == (1, 3), (uuid, kinds)
            assert not kinds.keys() & {"rejected", "failed"}, (uuid, kinds)

    async def assert_queues_empty(self, queues: Queues, timeout: float = 60.0) -> None:
        last: dict[str, int] = {}

        async def empty() -> bool:
            nonlocal last
            last = await queues()
            return bool(last) and not any(last.values())

        try:
            await eventually(empty, what="every queue empty", timeout=timeout, interval=0.2)
        except AssertionError:
            raise AssertionError(
                f"queues not empty: { {q: n for q, n in last.items() if n} }"
            ) from None

    async def assert_audit_verifies(self) -> None:
        """``xbroker audit verify`` says OK (run in this process: a new interpreter would
        load every standard again first)."""
        out = io.StringIO()

        def verify() -> int:
            with contextlib.redirect_stdout(out):
                return cli.main(["--config", str(self.config), "audit", "verify"])

        code = await asyncio.to_thread(verify)
        assert code == 0, out.getvalue()
        assert out.getvalue().startswith("OK"), out.getvalue()

    def fault_events(self, name: str) -> list[dict[str, Any]]:
        return [e for w in self.workers for e in w.events() if e.get("event") == name]

    async def assert_promise(self, queues: Queues) -> None:
        """Everything a scenario asserts once its fault is over."""
        self.mark("fault over")
        await self.until_all_final()
        self.mark("all final")
        self.assert_workers_alive()
        self.assert_exactly_once()
        await self.assert_queues_empty(queues)
        codes = await asyncio.to_thread(self.stop_workers)
        assert codes == [0] * len(codes), f"exit codes {codes}; logs in {self.logs}"
        self.agency_stats = list(
            await asyncio.gather(*(asyncio.to_thread(a.stop) for a in self.agencies))
        )
        await self.assert_audit_verifies()
        self.mark("checked")
        print("phases (s):", ", ".join(f"{k} {v:.1f}" for k, v in self.phases.items()))

    def mark(self, phase: str) -> None:
        """Note when ``phase`` was reached, seconds from the start of the run."""
        self.phases[phase] = time.monotonic() - self.started


@asynccontextmanager
async def fault_run(
    urls: Sequence[str],
    tmp: Path,
    *,
    state_dir: Path | None = None,
    agency_urls: Sequence[str] | None = None,
    **settings: object,
) -> AsyncIterator[FaultRun]:
    """The example world with two notified agencies, configured in ``tmp`` (state in
    ``state_dir``, default ``tmp/state``); no worker runs until the scenario starts one."""
    state = state_dir or tmp / "state"
    directory = fan_out_directory(tmp)
    lines = {
        "state_dir": f'"{state}"',
        "directory": f'"{directory}"',
        "prefetch": "32",
        "shutdown_grace_seconds": "5",
        "disk_check_seconds": "0.5",
        **{k: json.dumps(v) for k, v in settings.items()},
    }
    config = tmp / "xbroker.toml"
    config.write_text("".join(f"{k} = {v}\n" for k, v in lines.items()), encoding="utf-8")
    loaded = load_settings(config, amqp_urls=tuple(urls))
    ensure_dev_pki(loaded)
    parts = load_parts(loaded)
    logs = tmp / "logs"
    logs.mkdir()
    portal = Portal(
        list(urls),
        loaded.portal_kennung,
        party_signer(loaded, loaded.portal_kennung),
        parts.verifier(),
    )
    run = FaultRun(loaded, config, tuple(urls), portal, [], logs)
    for kennung in RECIPIENTS:
        name = kennung.replace(":", "_")
        run.agencies.append(
            Agency(
                kennung,
                config,
                tuple(agency_urls or urls),
                tmp / "agencies" / f"{name}.handled",
                logs / f"agency-{name}.log",
            )
        )
    (tmp / "agencies").mkdir()
    try:
        yield run
    finally:
        await portal.close()
        for agency in run.agencies:
            if agency.process is not None and agency.process.poll() is None:
                agency.process.kill()
                agency.process.wait(30)
        for worker in run.workers:
            if worker.process.poll() is None:
                worker.process.kill()
                worker.process.wait(30)
