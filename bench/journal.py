"""Journal writes of two workers on one host: on the event loop, or off it.

``python -m bench.journal [--seconds S] [--rate R]``

Two processes, as two workers of one host, share the SQLite status and dedup files and
the audit trail of one state folder. Each takes ``rate`` messages per second as a worker
does with its stores: the claim on the loop, then the message's events (accepted, one
queued) added to a `JournalBatch` with the worker's delay, the "ack" once they are
written. Each loop's stalls are watched (`bench.stalls.watch_stalls`) the whole time.

Two ways of writing, one after the other in the same run and the same folder:

* ``loop``: every journal written on the loop, as before P11 (docs/performance.md): a
  batch that meets the other worker's write lock waits in SQLite's busy handler, which
  sleeps 1, 2, 5, 10 ms ... between its tries, and the loop with it;
* ``off-loop``: the journals as the broker attaches them now, on connections of their
  own: written at once when their lock is free, else from the batch's thread.

Figures per way, both processes together: the worst stall, stalls of 5 ms or more and of
1 ms or more per second, the p99 of the wait from adding a message's events to their
being written (what delays its ack), the p99 of a claim (on the loop either way), and
the messages per second reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stalls import watch_stalls
from broker.stores.audit import AuditTrail
from broker.stores.journal import EventKind, Journal, JournalBatch, StatusEvent, ThreadJournal
from broker.stores.sqlite import SqliteDedupStore, SqliteStatusStore
from broker.worker.service import JOURNAL_DELAY

__all__ = ["OnLoop", "main", "measure"]

WAYS = ("loop", "off-loop")
_AUTHOR = "bench:journal"


class OnLoop:
    """A journal written on the loop: its blocking write called where the batch runs."""

    def __init__(self, journal: ThreadJournal) -> None:
        self._journal = journal

    def record(self, event: StatusEvent) -> None:
        self._journal.write_many((event,))

    def record_many(self, events: Sequence[StatusEvent]) -> None:
        self._journal.write_many(events)


async def _worker(way: str, folder: Path, seconds: float, rate: float, name: str) -> dict[str, Any]:
    status = SqliteStatusStore(folder / "status.sqlite3")
    dedup = SqliteDedupStore(folder / "dedup.sqlite3", 86400.0)
    audit = AuditTrail(folder / "audit.jsonl", issuer="bench")
    stores: list[ThreadJournal] = [status, audit, dedup]
    journals: list[Journal] = (
        [status, audit, dedup] if way == "off-loop" else [OnLoop(j) for j in stores]
    )
    batch = JournalBatch(journals, delay=JOURNAL_DELAY)
    stalls: list[float] = []
    waits: list[float] = []
    claims: list[float] = []
    watcher = asyncio.create_task(watch_stalls(lambda _at, stall: stalls.append(stall)))

    async def message(uuid: str) -> None:
        asked = time.perf_counter()
        await dedup.claim(_AUTHOR, uuid, "0" * 64)
        added = time.perf_counter()
        claims.append(added - asked)
        batch.add(StatusEvent(uuid, EventKind.ACCEPTED, author=_AUTHOR))
        batch.add(StatusEvent(uuid, EventKind.QUEUED, author=_AUTHOR, agency="bench:agency"))
        await batch.flushed()
        waits.append(time.perf_counter() - added)

    tasks: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    sent = 0
    try:
        while (now := time.perf_counter()) - start < seconds:
            due = start + sent / rate
            if due > now:
                await asyncio.sleep(due - now)
            task = asyncio.create_task(message(f"{name}-{way}-{sent}"))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    finally:
        watcher.cancel()
        await batch.flush()
        await status.close()
        await dedup.close()
        audit.close()
    return {
        "stalls": stalls,
        "waits": waits,
        "claims": claims,
        "seconds": elapsed,
        "messages": len(waits),
    }


def measure(seconds: float = 10.0, rate: float = 300.0) -> dict[str, dict[str, float]]:
    """Both ways, each with two worker processes at ``rate`` messages per second."""
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="xbroker-bench-journal-") as tmp:
        for way in WAYS:
            folder = Path(tmp) / way
            folder.mkdir()
            results = asyncio.run(_pair(way, folder, seconds, rate))
            stalls = [s for r in results for s in r["stalls"]]
            waits = [w for r in results for w in r["waits"]]
            claims = [c for r in results for c in r["claims"]]
            span = max(r["seconds"] for r in results)
            figures[way] = {
                "worst_stall_ms": max(stalls, default=0.0) * 1000,
                "stalls_5ms_per_s": sum(1 for s in stalls if s >= 0.005) / span,
                "stalls_1ms_per_s": len(stalls) / span,
                "written_p99_ms": _p99(waits) * 1000,
                "claim_p99_ms": _p99(claims) * 1000,
                "messages_per_s": sum(r["messages"] for r in results) / span,
            }
    return figures


async def _pair(way: str, folder: Path, seconds: float, rate: float) -> list[dict[str, Any]]:
    """Two worker processes of the same way, started together; their figures."""
    command = (sys.executable, "-m", "bench.journal", "--worker", way, str(folder))
    procs = [
        await asyncio.create_subprocess_exec(
            *command,
            *("--seconds", str(seconds), "--rate", str(rate), "--name", f"w{i}"),
            stdout=asyncio.subprocess.PIPE,
        )
        for i in range(2)
    ]
    outputs = await asyncio.gather(*(p.communicate() for p in procs))
    for proc in procs:
        if proc.returncode != 0:
            raise RuntimeError(f"bench.journal worker failed ({proc.returncode})")
    return [json.loads(out) for out, _ in outputs]


def _p99(values: Sequence[float]) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.journal", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=300.0, help="messages/s per worker")
    parser.add_argument("--worker", choices=WAYS, help=argparse.SUPPRESS)
    parser.add_argument("folder", nargs="?", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--name", default="w", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = asyncio.run(_worker(args.worker, args.folder, args.seconds, args.rate, args.name))
        print(json.dumps(result))
        return 0
    figures = measure(args.seconds, args.rate)
    print(f"Journal writes of two workers on one folder, {args.rate:.0f} msg/s each")
    head = (
        "way",
        "worst stall ms",
        "≥5 ms/s",
        "≥1 ms/s",
        "written p99 ms",
        "claim p99 ms",
        "msg/s",
    )
    print("  ".join(f"{h:>14}" for h in head))
    for way, f in figures.items():
        row = (
            way,
            *(f"{f[k]:.1f}" for k in ("worst_stall_ms", "stalls_5ms_per_s", "stalls_1ms_per_s")),
            f"{f['written_p99_ms']:.1f}",
            f"{f['claim_p99_ms']:.1f}",
            f"{f['messages_per_s']:.0f}",
        )
        print("  ".join(f"{c:>14}" for c in row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
