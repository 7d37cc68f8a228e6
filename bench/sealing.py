"""``python -m bench.sealing``: the broker's throughput with sealed delivery on and off.

    python -m bench.sealing --count 1000 --json sealing.json

In one run, against one RabbitMQ node: for 2 KB and 100 KB messages (ECDSA-signed, as
the common case), the broker workers drain the same signed backlog with every copy in
clear and with every copy sealed for its agency (RSA-OAEP-256 + A256GCM, the default
profile), alternating ``--repeats`` times so that drift of a busy machine hits both
alike. The agency's inbox filling up is the clock (`bench.throughput.broker_drain`).
Beside it, in-process micro figures: what sealing one copy and opening it cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aio_pika

from bench.messages import MessageClass, sign_many
from bench.parties import AGENCY_BAU, AGENCY_MELD
from bench.report import load_average, machine
from bench.throughput import broker_drain, declare_topology
from bench.world import BenchWorld, bench_world
from broker.app import party_keys
from sealing import RecipientKey, SealLimits, seal, unseal
from signing.keyfiles import encryption_paths

__all__ = ["main", "measure_sealing", "render", "run"]

CLASSES = (MessageClass("2kb", "ec"), MessageClass("100kb", "ec"))
_SHARE = {"2kb": 1.0, "100kb": 0.2}  # 100 KB messages drain slower: fewer suffice


def _say(text: str) -> None:
    print(f"[bench.sealing] {text}", file=sys.stderr, flush=True)


def _micro(world: BenchWorld, body: bytes, agency: str, budget: float) -> dict[str, float]:
    """Microseconds to seal one copy for ``agency`` and to open it with its key ring."""
    recipient = RecipientKey.from_file(encryption_paths(world.settings.pki, agency)[0][0])
    ring = party_keys(world.settings, agency)
    limits = SealLimits(len(body) + 1)
    sealed = seal(body, recipient)

    def per_call(action: Any) -> float:
        calls, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < budget or calls < 20:
            action()
            calls += 1
        return elapsed / calls * 1e6

    return {
        "seal_us": per_call(lambda: seal(body, recipient)),
        "open_us": per_call(lambda: unseal(sealed, ring, limits)),
        "sealed_bytes": float(len(sealed)),
        "clear_bytes": float(len(body)),
    }


async def measure_sealing(
    world: BenchWorld,
    channel: aio_pika.abc.AbstractChannel,
    count: int,
    workers: int,
    repeats: int,
    budget: float = 0.5,
) -> dict[str, Any]:
    """Per class: msg/s in clear and sealed (median of ``repeats``), their ratio, micro."""
    assert world.sealed_settings_file is not None
    sealed_world = replace(world, settings_file=world.sealed_settings_file)
    figures: dict[str, Any] = {}
    for cls in CLASSES:
        n = max(100, int(count * _SHARE[cls.size]))
        bodies = sign_many(world.settings.pki, cls, n)
        rates: dict[str, list[float]] = {"clear": [], "sealed": []}
        unmeasured: list[str] = []  # drains too short to give a rate (bench.queues)
        for _ in range(repeats):
            for mode, run_world in (("clear", world), ("sealed", sealed_world)):
                timing = (await broker_drain(run_world, channel, cls, bodies, workers)).timing
                if timing.per_second is None:
                    unmeasured.append(f"{mode}: {timing.shortfall}")
                    _say(f"{cls.name} {mode} x{workers}: no rate: {timing.shortfall}")
                    continue
                rates[mode].append(timing.per_second)
                _say(f"{cls.name} {mode} x{workers}: {timing.per_second:,.1f} msg/s")
        clear, sealed = (
            statistics.median(rates[m]) if rates[m] else None for m in ("clear", "sealed")
        )
        figures[cls.name] = {
            "messages": n,
            "clear_per_s": clear,
            "sealed_per_s": sealed,
            "ratio": sealed / clear if sealed is not None and clear else None,
            "runs": rates,
            "unmeasured": unmeasured,
            "micro": _micro(
                world, bodies[0], AGENCY_MELD if cls.size == "2kb" else AGENCY_BAU, budget
            ),
        }
    return figures


def render(figures: dict[str, Any]) -> str:
    lines = [
        f"sealed delivery, {figures['run']['workers']} worker(s), "
        f"load {figures['run']['load_before']} → {figures['run']['load_after']}",
        f"{'class':<12} {'clear msg/s':>12} {'sealed msg/s':>13} {'ratio':>6} "
        f"{'seal µs':>9} {'open µs':>9} {'size ×':>7}",
    ]
    for name, row in figures["classes"].items():
        micro = row["micro"]
        lines.append(
            f"{name:<12} {_figure(row['clear_per_s'], ',.1f'):>12} "
            f"{_figure(row['sealed_per_s'], ',.1f'):>13} {_figure(row['ratio'], '.2f'):>6} "
            f"{micro['seal_us']:>9,.0f} {micro['open_us']:>9,.0f} "
            f"{micro['sealed_bytes'] / micro['clear_bytes']:>7.2f}"
        )
        lines.extend(f"  {name}: no rate from one drain, {why}" for why in row["unmeasured"])
    return "\n".join(lines)


def _figure(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


async def run(
    count: int, workers: int, repeats: int, amqp_url: str | None, budget: float = 0.5
) -> dict[str, Any]:
    """The whole sealing benchmark in a world of its own; its figures as a plain dict."""
    load_before, started = load_average(), time.perf_counter()
    async with bench_world(amqp_url) as world:
        connection = await aio_pika.connect(world.amqp_url)
        async with connection:
            channel = await connection.channel()
            await declare_topology(world, channel)
            classes = await measure_sealing(world, channel, count, workers, repeats, budget)
    return {
        "machine": machine(),
        "run": {
            "count": count,
            "workers": workers,
            "repeats": repeats,
            "load_before": load_before,
            "load_after": load_average(),
            "seconds": time.perf_counter() - started,
        },
        "classes": classes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sealing", description="Throughput with sealing on and off."
    )
    parser.add_argument("--count", type=int, default=1000, help="2 KB backlog (100 KB: 1/5)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=2, help="clear/sealed pairs per class")
    parser.add_argument("--amqp-url", help="run against this URL's vhost as given")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    figures = asyncio.run(run(args.count, args.workers, args.repeats, args.amqp_url))
    print(render(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
