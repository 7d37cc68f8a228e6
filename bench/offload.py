"""Where a worker should decide its messages: on its event loop, in a thread, or in a process.

    python -m bench.offload [--quick] [--json PATH]

The broker's event loop carries its heartbeats, the confirms of other messages, the
health endpoint and the metrics. Deciding a message (``Pipeline.process``) is CPU work;
three ways of doing it are measured here with the same pipeline:

``inline``
    ``process`` called on the loop, as the worker did before.
``thread``
    one thread of its own (``loop.run_in_executor``): lxml releases the GIL while it
    parses, canonicalizes and validates, and Python code between gives it up every
    5 ms (``sys.getswitchinterval``).
``offloop``
    the worker's own hand-over (``broker.worker.offloop``): a thread of its own, the
    hard limit kept, results handed back to the loop as they are ready.
``process``
    a pool of one process that holds a pipeline of its own (loaded at its start) and
    gets the body and returns the decision by pickling.

For each: the cost of the hop (mean wall µs per 2 KB message decided one after the
other, and the CPU µs the loop's thread spends per message: for ``inline`` the whole
decision, otherwise what handing it over and back costs the loop; and the loop's CPU
µs per message when a burst of ``BURST`` messages is handed over at once, as RabbitMQ
delivers a prefetch of them to a worker with a backlog); the worst stall of
the loop, the longest gap seen by a task that wakes every 2 ms, less the time the
process waited for a CPU (``bench.stalls``), while the largest inputs the limits let
through are decided (a valid 9.5 MB message, and 199,900 empty elements with a copied
signature); and the RSS the mechanism adds (for ``process``, the child's whole RSS: it
loads the catalog again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Final

from bench.hostile import LARGE, SMALL
from bench.messages import content, grow_to, sign_many
from bench.stalls import LoopStalls
from bench.world import offline_parts
from broker.app import load_parts
from broker.pipeline import Accepted, Decision, Pipeline
from broker.settings import load_settings
from broker.worker.offloop import OffLoop
from signing.keyfiles import party_paths
from signing.signer import Signer
from tests.attacks.generators import element_flood

__all__ = ["MECHANISMS", "measure", "run"]

MECHANISMS: Final = ("inline", "thread", "offloop", "process")
BURST: Final = 64  # the worker's default prefetch
_PIPELINE: list[Pipeline] = []  # the child's pipeline in ``process`` mode


def _pipeline(world: Path) -> Pipeline:
    parts = load_parts(load_settings(world / "xbroker.toml"))
    return Pipeline(catalog=parts.catalog, verifier=parts.verifier(), directory=parts.directory)


def _load_child(world: Path) -> None:
    _PIPELINE.append(_pipeline(world))


def _decide_in_child(body: bytes) -> Decision:
    return _PIPELINE[0].process(body, at=datetime.now(UTC))


def _rss_mb(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _measure_one(
    mechanism: str, world: Path, small: Sequence[bytes], large: dict[str, bytes]
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    pipeline = _pipeline(world)
    executor: Executor | None = None
    offloop: OffLoop | None = None
    rss_before = _rss_mb()
    if mechanism == "offloop":
        offloop = OffLoop(hard_limit=600.0)
    elif mechanism == "thread":
        executor = ThreadPoolExecutor(1, thread_name_prefix="decide")
    elif mechanism == "process":
        executor = ProcessPoolExecutor(
            1, mp_context=get_context("spawn"), initializer=_load_child, initargs=(world,)
        )

    async def decide(body: bytes) -> Decision:
        if offloop is not None:
            at = datetime.now(UTC)
            return await offloop.run(lambda: pipeline.process(body, at=at))
        if executor is None:
            return pipeline.process(body, at=datetime.now(UTC))
        if mechanism == "thread":
            at = datetime.now(UTC)
            return await loop.run_in_executor(executor, lambda: pipeline.process(body, at=at))
        return await loop.run_in_executor(executor, _decide_in_child, body)

    try:
        await decide(small[0])  # warm up (and start the child)
        cpu, wall = time.thread_time(), time.perf_counter()
        for body in small[1:]:
            await decide(body)
        count = len(small) - 1
        figures = {
            "hop_wall_us": (time.perf_counter() - wall) / count * 1e6,
            "loop_cpu_us": (time.thread_time() - cpu) / count * 1e6,
        }
        cpu = time.thread_time()
        for start in range(1, len(small), BURST):
            await asyncio.gather(*(decide(body) for body in small[start : start + BURST]))
        figures["burst_loop_cpu_us"] = (time.thread_time() - cpu) / count * 1e6
        for name, body in large.items():
            async with LoopStalls() as stalls:
                decision = await decide(body)
            if name.startswith("valid") and not isinstance(decision, Accepted):
                raise RuntimeError(f"the {name} message is {decision}")
            figures[f"worst_stall_ms/{name}"] = stalls.worst * 1000
        added = _rss_mb() - rss_before
        if isinstance(executor, ProcessPoolExecutor):
            added = sum(_rss_mb(pid) for pid in executor._processes)
        figures["added_rss_mb"] = added
        return figures
    finally:
        if executor is not None:
            executor.shutdown()
        if offloop is not None:
            offloop.close()


def measure(quick: bool, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """The figures of every mechanism, measured one after the other in this process."""
    with tempfile.TemporaryDirectory(prefix="xbroker-offload-") as tmp:
        world = Path(tmp)
        parts = offline_parts(world)
        small = sign_many(world / "pki", SMALL, 200 if quick else 1000)
        cert, key = party_paths(world / "pki", SMALL.author)
        signer = Signer.from_files(key, cert)
        root, standard = content(parts.catalog, LARGE)
        grow_to(root, 9_500_000)
        standard.validate(root)
        large = {
            "valid 9.5 MB": signer.sign(root),
            "199,900 elements": element_flood(small[0], 199_900),
        }
        results: dict[str, Any] = {}
        for mechanism in MECHANISMS:
            results[mechanism] = asyncio.run(_measure_one(mechanism, world, small, large))
            say(f"{mechanism}: {results[mechanism]}")
        return results


def render(results: dict[str, Any]) -> str:
    keys = list(next(iter(results.values())))
    lines = [
        "Deciding off the loop: hop cost per 2 KB message, worst loop stall while deciding "
        "the largest inputs within the limits, RSS added",
        "  " + f"{'figure':<32}" + "".join(f"{m:>12}" for m in results),
    ]
    for key in keys:
        lines.append("  " + f"{key:<32}" + "".join(f"{results[m][key]:>12,.1f}" for m in results))
    return "\n".join(lines)


def run(quick: bool) -> dict[str, float]:
    """The figures flat, ``<mechanism>/<figure>``, for bench.micro."""
    results = measure(quick)
    print(render(results))
    return {f"{m}/{k}": v for m, figures in results.items() for k, v in figures.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.offload", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer small messages")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    results = measure(args.quick, lambda t: print(f"[bench] {t}", file=sys.stderr, flush=True))
    print(render(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
