"""Where a large XML message's memory goes: each step of the worker's pipeline alone.

``bench.large`` measures a worker's peak resident set while it drains XML messages of 1
and 5 MB: well above the target of 4× the message size. This module shows why. It takes
one signed message of each size through the steps of `broker.pipeline.Pipeline`, with
the worker's default allocator setting (`broker.commands.run.return_large_allocations`),
and reports per step the peak resident set above the level before it (``peak``) and
what stays resident while its result is held (``held``), in MB and in message sizes.

    python -m bench.large_steps [--json PATH]

Two fresh processes per size. One runs ``parse`` (the hardened parser, the tree),
``verify`` (`signing.Verifier`: the signature checked over the canonical bytes, the
signed tree parsed from them, the received tree still held by the caller) and
``validate`` (the standard's compiled schema), each with the results of the steps
before it held. The other runs ``pipeline`` (`Pipeline.process`: everything at once, as
the worker runs it, which lets the received tree go before it parses the signed one).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from bench.large import LARGE_SIZES, large_bodies, reset_peak
from bench.workers import memory_of
from bench.world import bench_world
from broker.app import load_parts
from broker.commands.run import return_large_allocations
from broker.pipeline import Accepted, Pipeline
from broker.settings import Settings, load_settings
from signing import parse_untrusted

__all__ = ["measure", "render"]

_MB = 1024 * 1024
_T = TypeVar("_T")


def _resident() -> tuple[int, int]:
    """This process's resident set and its high-water mark, in bytes."""
    memory = memory_of(os.getpid())
    return memory.rss_bytes, memory.peak_rss_bytes


def _step(action: Callable[[], _T]) -> tuple[_T, dict[str, float]]:
    """Run ``action``; its result, and its peak and held resident set above the start."""
    gc.collect()
    reset_peak(os.getpid())
    before, _ = _resident()
    result = action()
    held, peak = _resident()
    return result, {"peak_mb": (peak - before) / _MB, "held_mb": (held - before) / _MB}


def _steps(settings_file: Path, message: Path, whole: bool) -> dict[str, dict[str, float]]:
    """In a fresh process (a heap that has held nothing large yet): the whole pipeline,
    or each step once with the results of the steps before it held."""
    return_large_allocations(Settings.model_fields["malloc_mmap_threshold_bytes"].default)
    parts = load_parts(load_settings(settings_file))
    body = message.read_bytes()
    at = datetime.now(UTC)
    verifier = parts.verifier()
    if whole:
        pipeline = Pipeline(catalog=parts.catalog, verifier=verifier, directory=parts.directory)
        decision, figures = _step(partial(pipeline.process, body, at=at))
        if not isinstance(decision, Accepted):
            raise RuntimeError(f"{message.name} is rejected: {decision}")
        return {"pipeline": figures}
    root, parse = _step(partial(parse_untrusted, body))
    verified, verify = _step(partial(verifier.verify, root, at=at))
    signed = verified.signed
    standard, _ = parts.catalog.identify(signed)
    _, validate = _step(partial(standard.validate, signed))
    return {"parse": parse, "verify": verify, "validate": validate}


def _in_child(settings_file: Path, message: Path, whole: bool) -> dict[str, dict[str, float]]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.large_steps", "--steps-of", str(message)]
        + (["--whole"] if whole else []),
        env=os.environ | {"BENCH_SETTINGS": str(settings_file)},
        capture_output=True,
        text=True,
        check=True,
    )
    steps: dict[str, dict[str, float]] = json.loads(done.stdout)
    return steps


async def measure(
    amqp_url: str | None = None, sizes: dict[str, int] = LARGE_SIZES
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async with bench_world(amqp_url) as world:
        for label, size in sizes.items():
            [body], _ = large_bodies(world, size, "xml", 1)
            message = world.root / f"large-{label}.xml"
            message.write_bytes(body)
            steps = await asyncio.to_thread(_in_child, world.settings_file, message, False)
            steps |= await asyncio.to_thread(_in_child, world.settings_file, message, True)
            mb = len(body) / _MB
            for figures in steps.values():
                figures["peak_x"] = figures["peak_mb"] / mb
                figures["held_x"] = figures["held_mb"] / mb
            out[label] = {"message_mb": mb, "steps": steps}
    return out


def render(figures: dict[str, Any]) -> str:
    lines = [
        "Large XML, each pipeline step alone (bench.large_steps): resident set above the "
        "step's start, MB and × message size",
        f"  {'message':8} {'step':9} {'peak MB':>8} {'peak ×':>7} {'held MB':>8} {'held ×':>7}",
    ]
    for label, row in figures.items():
        for step, f in row["steps"].items():
            lines.append(
                f"  {label:8} {step:9} {f['peak_mb']:8.1f} {f['peak_x']:7.1f} "
                f"{f['held_mb']:8.1f} {f['held_x']:7.1f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.large_steps", description=__doc__)
    parser.add_argument("--amqp-url", help="run against this URL's vhost as given")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--steps-of", type=Path, help=argparse.SUPPRESS)  # the child's part
    parser.add_argument("--whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps_of is not None:
        steps = _steps(Path(os.environ["BENCH_SETTINGS"]), args.steps_of, args.whole)
        print(json.dumps(steps))
        return 0
    figures = asyncio.run(measure(args.amqp_url))
    print(render(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
