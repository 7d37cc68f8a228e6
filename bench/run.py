"""One benchmark run: every figure, in one run, against one RabbitMQ node.

Order: micro figures and the costs of a growing world (``bench.scale``; no RabbitMQ),
then the relay and the broker draining backlogs, the memory drain (one worker, the large
backlog, profiled with py-spy), latency at 25, 50 and 80 % of the round trip's measured
maximum (``bench.latency``) and the same loads through RabbitMQ's hops alone
(``bench.floor``, with the disk's fdatasync times), large messages (``bench.large``) and
the HTTP ingress (``bench.http``). ``bench.targets`` sets each target beside its figure.
Progress goes to stderr; the figures come back as one JSON-ready dict (see
``bench.report.render`` for its shape in words).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aio_pika
from lxml import etree

from bench import scale
from bench.floor import disk_sync
from bench.http import measure_http
from bench.large import measure_large
from bench.latency import measure_floor, measure_loads
from bench.launch import EventLoop
from bench.messages import MessageClass, all_classes, content, sign_many, signed_sizes
from bench.micro import class_figures, module_figures
from bench.profiling import read_profile
from bench.queues import DrainTiming
from bench.report import load_average, machine
from bench.targets import targets
from bench.throughput import BrokerDrain, broker_drain, declare_topology, relay_rate
from bench.world import BenchWorld, bench_world
from broker.settings import Settlement

__all__ = ["FULL_BACKLOG", "LOAD_SHARES", "Options", "measure"]

FULL_BACKLOG = 100_000
LOAD_SHARES = (0.25, 0.5, 0.8)
_MB = 1024 * 1024
# Drain sizes relative to Options.count: large messages drain slower, fewer suffice.
_SIZE_SHARE = {"2kb": 1.0, "10kb": 0.5, "100kb": 0.2}
_DISK_SYNCS = {True: 300, False: 1000}  # fdatasync probes, quick and full


@dataclass(frozen=True)
class Options:
    """What to run. ``None`` means the default of a quick or a full run."""

    quick: bool = False
    amqp_url: str | None = None  # None: XBROKER_AMQP_URL or the local node, private vhost
    workers: int | None = None  # "one per core"; default os.cpu_count()
    count: int | None = None  # backlog per throughput drain (2 KB messages)
    backlog: int | None = None  # backlog of the memory drain
    latency_seconds: float | None = None  # publishing time per offered load
    profile: bool = True  # py-spy on the memory drain, if py-spy is installed
    profile_out: Path | None = None  # where to keep py-spy's collapsed stacks
    all_classes: bool | None = None  # throughput for every class, not only 2kb-ecdsa
    loop: EventLoop = "asyncio"  # the event loop of the worker processes (and relays)
    prefetch: int = 64  # of the broker workers and the relays alike
    settlement: Settlement = Settlement.CONFIRM  # how the workers settle ingress messages
    scale: bool = True  # directories of 10 to 20,000 agencies, 1 to 30 standards
    large: bool = True  # 1 MB and 5 MB messages
    http: bool = True  # the HTTP ingress, and 10,000 keep-alive clients

    def resolved(self) -> Options:
        quick = self.quick
        return Options(
            quick=quick,
            amqp_url=self.amqp_url,
            workers=self.workers or os.cpu_count() or 1,
            count=self.count or (600 if quick else 3000),
            backlog=self.backlog or (2000 if quick else FULL_BACKLOG),
            latency_seconds=self.latency_seconds or (2.0 if quick else 10.0),
            profile=self.profile,
            profile_out=self.profile_out,
            loop=self.loop,
            prefetch=self.prefetch,
            settlement=self.settlement,
            all_classes=(not quick) if self.all_classes is None else self.all_classes,
            scale=self.scale,
            large=self.large,
            http=self.http,
        )


def _say(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


async def measure(options: Options) -> dict[str, Any]:
    """Run the whole benchmark and return its figures."""
    opts = options.resolved()
    assert opts.workers and opts.count and opts.backlog and opts.latency_seconds
    started, load_before = time.perf_counter(), load_average()
    classes = all_classes()
    primary = classes[0]  # 2kb-ecdsa: the common case, used for memory and latency
    measured = classes if opts.all_classes else (primary,)
    async with bench_world(
        opts.amqp_url, prefetch=opts.prefetch, loop=opts.loop, settlement=opts.settlement
    ) as world:
        _say(f"run folder {world.root}, RabbitMQ {world.amqp_url.rsplit('@', 1)[-1]}")
        messages = _messages(world, classes)
        micro = _micro(world, classes, opts.quick)
        grown = await _scale(opts.quick) if opts.scale else None
        connection = await aio_pika.connect(world.amqp_url)
        async with connection:
            channel = await connection.channel()
            await declare_topology(world, channel)
            memory_drain, memory_bodies = await _memory(world, channel, primary, opts)
            throughput = await _throughput(world, channel, measured, opts)
            maximum = throughput[primary.name][f"broker_{opts.workers}"]
            latency = await _latency(world, channel, primary, opts, maximum)
            large = await _large(world, channel, opts) if opts.large else None
            http = await _http(world, channel, opts) if opts.http else None
        profile = _profile_figures(memory_drain, primary, opts.profile_out)
    samples = memory_drain.rss_samples or (0,)
    figures: dict[str, Any] = {
        "machine": machine(),
        "run": {
            "quick": opts.quick,
            "loop": opts.loop,
            "settlement": opts.settlement.value,
            "prefetch": opts.prefetch,
            "workers": opts.workers,
            "count": opts.count,
            "backlog": opts.backlog,
            "latency_seconds": opts.latency_seconds,
            "load_before": load_before,
            "load_after": load_average(),
            "seconds": time.perf_counter() - started,
        },
        "messages": messages,
        "throughput": throughput,
        "latency": latency,
        "memory": {
            "class": primary.name,
            "backlog": memory_bodies,
            "peak_rss_mb": memory_drain.peak_rss_bytes / _MB,
            "rss_start_mb": samples[0] / _MB,
            "rss_end_mb": samples[-1] / _MB,
            "per_s": memory_drain.timing.per_second,
            "unmeasured": memory_drain.timing.shortfall,
        },
        "micro": micro,
        "profile": profile,
        "scale": grown,
        "large": large,
        "http": http,
    }
    figures["targets"] = [t._asdict() for t in targets(figures)]
    return figures


async def _scale(quick: bool) -> dict[str, Any]:
    _say("directories of growing size, catalogs of growing size")
    # In a thread of its own: it runs the directory watcher's reload, on a loop of its own.
    return await asyncio.to_thread(scale.run, quick)


async def _large(
    world: BenchWorld, channel: aio_pika.abc.AbstractChannel, opts: Options
) -> dict[str, Any]:
    _say("large messages, one worker")
    figures = await measure_large(world, channel, opts.quick, opts.prefetch)
    for name, f in figures.items():
        _say(
            f"  {name}: {f['mb_per_s'] or 0:.1f} MB/s, {f['peak_above_idle_mb']:.0f} MB above idle"
        )
    return figures


async def _http(
    world: BenchWorld, channel: aio_pika.abc.AbstractChannel, opts: Options
) -> dict[str, Any]:
    assert opts.workers
    _say("HTTP ingress against AMQP ingress, then 10,000 keep-alive clients")
    figures = await measure_http(world, channel, opts.quick, opts.workers)
    _say(f"  HTTP x{opts.workers} / AMQP {figures['http_ratio']:.2f}")
    return figures


def _messages(world: BenchWorld, classes: Sequence[MessageClass]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for cls in classes:
        root, standard = content(world.parts.catalog, cls)
        out[cls.name] = {
            "standard": standard.key,
            "content_bytes": len(etree.tostring(root, xml_declaration=True, encoding="UTF-8")),
            "signed_bytes": signed_sizes(sign_many(world.settings.pki, cls, 3)),
        }
    return out


def _micro(world: BenchWorld, classes: Sequence[MessageClass], quick: bool) -> dict[str, Any]:
    _say("micro figures")
    budget = 0.05 if quick else 0.5
    per_class = {
        cls.name: class_figures(world, sign_many(world.settings.pki, cls, 1)[0], budget)
        for cls in classes
    }
    return {"classes": per_class, "modules": module_figures(quick)}


async def _memory(
    world: BenchWorld, channel: aio_pika.abc.AbstractChannel, cls: MessageClass, opts: Options
) -> tuple[BrokerDrain, int]:
    assert opts.backlog
    _say(f"signing a backlog of {opts.backlog:,} {cls.name} messages")
    bodies = sign_many(world.settings.pki, cls, opts.backlog)
    _say(f"one worker drains {len(bodies):,} messages (memory, profile)")
    profile_seconds = min(30.0, max(2.0, len(bodies) / 1000)) if opts.profile else 0.0
    drain = await broker_drain(world, channel, cls, bodies, 1, profile_seconds=profile_seconds)
    _say(f"  {_rate(drain.timing)}, peak RSS {drain.peak_rss_bytes / _MB:.1f} MB")
    return drain, len(bodies)


async def _throughput(
    world: BenchWorld,
    channel: aio_pika.abc.AbstractChannel,
    classes: Sequence[MessageClass],
    opts: Options,
) -> dict[str, Any]:
    """Rates per class and pool size; a drain too short to time gives None, and the
    reason under ``unmeasured``."""
    assert opts.workers and opts.count
    results: dict[str, Any] = {}
    relay_timings: dict[tuple[str, int], tuple[DrainTiming, int]] = {}
    for cls in classes:
        count = max(100, int(opts.count * _SIZE_SHARE[cls.size]))
        bodies = sign_many(world.settings.pki, cls, count)
        figures: dict[str, Any] = {"messages": count, "relay_messages": {}, "unmeasured": {}}
        for processes in sorted({1, opts.workers}):
            if (cls.size, processes) not in relay_timings:
                relay_timings[cls.size, processes] = await relay_rate(
                    world, channel, bodies, processes
                )
            _record_relay(figures, f"relay_{processes}", relay_timings[cls.size, processes], cls)
            drain = await broker_drain(world, channel, cls, bodies, processes)
            _record(figures, f"broker_{processes}", drain.timing, cls)
            figures[f"ratio_{processes}"] = _ratio(
                figures[f"broker_{processes}"], figures[f"relay_{processes}"]
            )
        if cls is classes[0]:
            # The broker's AMQP work alone: consume, two confirmed publishes, ack.
            for processes in sorted({1, opts.workers}):
                relayed = await relay_rate(world, channel, bodies, processes, publishes=2)
                _record_relay(figures, f"relay2_{processes}", relayed, cls)
                figures[f"protocol_ratio_{processes}"] = _ratio(
                    figures[f"broker_{processes}"], figures[f"relay2_{processes}"]
                )
        results[cls.name] = figures
    return results


def _record(figures: dict[str, Any], key: str, timing: DrainTiming, cls: MessageClass) -> None:
    figures[key] = timing.per_second
    if timing.shortfall is not None:
        figures["unmeasured"][key] = timing.shortfall
    _say(f"{key} {cls.name}: {_rate(timing)}")


def _record_relay(
    figures: dict[str, Any], key: str, relayed: tuple[DrainTiming, int], cls: MessageClass
) -> None:
    """A relay's rate, and the backlog it drained (grown until it gave a rate)."""
    timing, backlog = relayed
    figures["relay_messages"][key] = backlog
    _record(figures, key, timing, cls)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _rate(timing: DrainTiming) -> str:
    rate = timing.per_second
    if rate is None:
        return f"no rate: {timing.shortfall}"
    return f"{rate:,.1f} msg/s ({timing.measured:,} messages over {timing.polls} polls)"


async def _latency(
    world: BenchWorld,
    channel: aio_pika.abc.AbstractChannel,
    cls: MessageClass,
    opts: Options,
    ingress_maximum: float | None,
) -> dict[str, Any]:
    assert opts.workers and opts.latency_seconds
    # The round trip's maximum is measured first and is at most the ingress maximum:
    # sign enough for shares of the latter, publish what shares of the former ask for.
    # Without an ingress maximum (its drain was too short to time), the smallest batches.
    ceiling = ingress_maximum or 0.0
    saturation = max(50, int(ceiling * opts.latency_seconds / 2))
    sizes = [max(20, int(share * ceiling * opts.latency_seconds)) for share in LOAD_SHARES]
    _say(f"latency: round-trip maximum, then {', '.join(f'{s:.0%}' for s in LOAD_SHARES)} of it")
    bodies = sign_many(world.settings.pki, cls, saturation + sum(sizes))
    batches, start = [], saturation
    for size in sizes:
        batches.append(bodies[start : start + size])
        start += size
    latency = await measure_loads(
        world,
        channel,
        cls,
        opts.workers,
        LOAD_SHARES,
        bodies[:saturation],
        batches,
        opts.latency_seconds,
        opts.prefetch,
    )
    _say(f"  round-trip maximum {latency.maximum_per_s:,.1f} msg/s")
    for load in latency.loads:
        _say(
            f"  {load.share:.0%}: agency p99 {load.agency.p99_ms:.1f} ms, "
            f"receipt p99 {load.receipt.p99_ms:.1f} ms, worst worker loop stall "
            f"{load.stalls.worst_ms:.1f} ms ({load.stalls.over_5ms} of 5 ms or more)"
        )
    _say("latency floor: the same loads through RabbitMQ's four hops alone")
    bare = await measure_floor(world, channel, opts.workers, latency.loads, batches, opts.prefetch)
    for load in bare:
        _say(f"  {load.share:.0%}: bare receipt p99 {load.receipt.p99_ms:.1f} ms")
    syncs = disk_sync(world.root / "disk-sync", _DISK_SYNCS[opts.quick])
    _say(f"  fdatasync p99 {syncs.p99_ms:.1f} ms, max {syncs.max_ms:.1f} ms")
    return {
        "class": cls.name,
        "workers": opts.workers,
        "ingress_maximum_per_s": ingress_maximum,
        "maximum_per_s": latency.maximum_per_s,
        "saturation": asdict(latency.saturation),
        "cpu_ms_per_message": latency.cpu_ms,
        "loads": [asdict(load) for load in latency.loads],
        "floor": [asdict(load) for load in bare],
        "disk_sync": asdict(syncs),
    }


def _profile_figures(
    drain: BrokerDrain, cls: MessageClass, keep: Path | None, top: int = 15
) -> dict[str, Any] | None:
    if drain.profile is None:
        return None
    if keep is not None:
        shutil.copyfile(drain.profile, keep)
    profile = read_profile(drain.profile)
    return {
        "class": cls.name,
        "samples": profile.samples,
        "stages": {k: profile.share(v) for k, v in profile.stages.items()},
        "top_self": {k: profile.share(v) for k, v in profile.self_time.most_common(top)},
        "top_inclusive": {k: profile.share(v) for k, v in profile.inclusive.most_common(40)},
    }
