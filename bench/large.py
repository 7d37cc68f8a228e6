"""Large messages through the whole pipeline: 1 MB and 5 MB building applications.

Two shapes per size, both XBau 1.0 Bauantrag from ``bench.messages``:

* ``bundle``: the application lists its documents (``anlage``: name, file name, SHA-256)
  and the documents travel with it as attachments of a bundle
  (``broker.amqp.bundle``): random bytes, as incompressible as the PDFs they stand for,
  so the signed XML is a few KB and the body is ``size`` bytes. What a portal sends.
* ``xml``: the XML alone grown to ``size`` bytes with ``anlage`` entries: every byte is
  parsed, canonicalized, hashed and validated. The worst case of the same size.

One worker (``xbroker run``) starts on an empty ingress queue; once it consumes, its
resident set is read (**idle**) and its high-water mark reset (``/proc/PID/clear_refs``),
then the messages are published and the agency's inbox is the clock, as in
``bench.throughput``. Figures: messages/s and MB/s of the 10-90 % window, the peak RSS
of the drain above idle, and that as a multiple of the message size (target ≤ 4). Each
size and shape also once more at prefetch 1 with a fixed mmap threshold of 128 KB
(``-mmap128k``, ``malloc_mmap_threshold_bytes``), against the default's growing one.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractChannel
from lxml import etree

from bench.messages import MessageClass, content, grow_to
from bench.queues import ArrivalClock, DrainTiming, preload
from bench.throughput import purge, uuid_of
from bench.workers import WorkerPool, broker_command, memory_of
from bench.world import BenchWorld
from broker.amqp import topology
from broker.amqp.bundle import Bundle, Part
from xta_schemas.samples import with_fresh_header

__all__ = ["LARGE_SIZES", "LargeDrain", "large_bodies", "large_drain", "reset_peak"]

LARGE_SIZES = {"1mb": 1024 * 1024, "5mb": 5 * 1024 * 1024}
_ATTACHMENT = 256 * 1024  # one plan of a building application
_START_TIMEOUT = 60.0
_MB = 1024 * 1024
_CLASS = MessageClass("10kb", "ec")  # the Bauantrag of the bench, signed with ECDSA


@dataclass(frozen=True, slots=True)
class LargeDrain:
    timing: DrainTiming
    idle_rss_bytes: int
    peak_rss_bytes: int  # the high-water mark since it was reset at idle


def _anlagen(root: etree._Element, files: list[tuple[str, bytes]]) -> None:
    """Replace the sample's document list with one ``anlage`` per file."""
    template = root.find("antrag/anlage")
    if template is None:
        raise ValueError("the Bauantrag sample has no anlage to repeat")
    last = template
    for name, data in files:
        entry = deepcopy(template)
        entry[0].text = f"Bauvorlage {name}"
        entry[1].text = name
        entry[2].text = hashlib.sha256(data).hexdigest()
        last.addnext(entry)
        last = entry
    template.getparent().remove(template)  # type: ignore[union-attr]


def large_bodies(world: BenchWorld, size: int, shape: str, count: int) -> tuple[list[bytes], str]:
    """``count`` signed messages of about ``size`` bytes each, and their content type."""
    root, standard = content(world.parts.catalog, _CLASS)
    signer = world.author_signer(_CLASS.key)
    if shape == "xml":
        grow_to(root, size)
        standard.validate(root)
        return [signer.sign(with_fresh_header(root, standard)) for _ in range(count)], (
            "application/xml"
        )
    bodies, content_type = [], "application/xml"
    for _ in range(count):
        files = [
            (f"plan-{index:02d}.pdf", os.urandom(_ATTACHMENT))
            for index in range(max(1, size // _ATTACHMENT))
        ]
        message = deepcopy(root)
        _anlagen(message, files)
        signed = signer.sign(with_fresh_header(message, standard))
        bundle = Bundle(
            Part(signed, "message", "application/xml", "antrag.xml"),
            tuple(Part(data, name, "application/pdf", name) for name, data in files),
        )
        body, content_type = bundle.encode()
        bodies.append(body)
    return bodies, content_type


def reset_peak(pid: int) -> None:
    """Reset the process's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


async def large_drain(
    world: BenchWorld,
    channel: AbstractChannel,
    bodies: list[bytes],
    content_type: str,
    prefetch: int,
    extra_env: dict[str, str] | None = None,
) -> LargeDrain:
    """One worker with ``prefetch``, idle first, then ``bodies`` published and timed."""
    inbox = topology.agency_queue(_CLASS.agency)
    await purge(channel, [inbox, topology.receipt_queue(_CLASS.author)])
    drain_id = f"large-{secrets.token_hex(3)}"
    env = world.worker_env(world.root / "state" / drain_id) | {"XBROKER_PREFETCH": str(prefetch)}
    env |= extra_env or {}
    command = broker_command(world.settings_file, world.loop)
    clock = ArrivalClock(channel, inbox)
    await clock.sample()
    exchange = await channel.get_exchange(topology.INGRESS_EXCHANGE)
    async with WorkerPool(command, 1, world.root / "logs" / drain_id, env) as pool:
        await pool.wait_consuming(channel, topology.INGRESS_QUEUE, _START_TIMEOUT)
        pid = pool.pids[0]
        await asyncio.sleep(0.5)  # let start-up garbage settle before reading idle
        reset_peak(pid)
        idle = memory_of(pid).rss_bytes
        arrivals = asyncio.create_task(clock.until(len(bodies), timeout=300.0))
        await preload(
            exchange,
            topology.INGRESS_ROUTING_KEY,
            bodies,
            message_ids=[_uuid(b, content_type) for b in bodies],
            content_type=content_type,
        )
        timing = await arrivals
        peak = memory_of(pid).peak_rss_bytes
    await purge(channel, [inbox, topology.receipt_queue(_CLASS.author)])
    return LargeDrain(timing, idle, peak)


def _uuid(body: bytes, content_type: str) -> str:
    if content_type == "application/xml":
        return uuid_of(body)
    return uuid_of(Bundle.decode(body, content_type).message.content)


async def measure_large(
    world: BenchWorld,
    channel: AbstractChannel,
    quick: bool,
    prefetch: int,
    sizes: dict[str, int] = LARGE_SIZES,
) -> dict[str, Any]:
    """Every size and shape at prefetch 1 (one message in the worker at a time: its own
    cost), and the bundles also at the run's ``prefetch`` (what a worker holds when a
    backlog of them waits): rates, MB/s, idle and peak RSS (see the module)."""
    out: dict[str, Any] = {}
    for label, size in sizes.items():
        for shape in ("bundle", "xml"):
            # Bundles move at tens of MB/s, so more of them are needed for a timed window.
            megabytes = (60 if shape == "bundle" else 20) * (1 if quick else 3)
            count = max(8, megabytes * _MB // size)
            bodies, content_type = large_bodies(world, size, shape, count)
            for fetch in sorted({1, prefetch} if shape == "bundle" else {1}):
                name = f"{label}-{shape}" + ("" if fetch == 1 else f"-prefetch{fetch}")
                out[name] = await _figures(world, channel, bodies, content_type, fetch)
            # The variant: a fixed mmap threshold (P18), against the default's growing one.
            out[f"{label}-{shape}-mmap128k"] = await _figures(
                world, channel, bodies, content_type, 1, _FIXED_THRESHOLD
            )
    return out


_FIXED_THRESHOLD = {"XBROKER_MALLOC_MMAP_THRESHOLD_BYTES": str(128 * 1024)}


async def _figures(
    world: BenchWorld,
    channel: AbstractChannel,
    bodies: list[bytes],
    content_type: str,
    prefetch: int,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    drain = await large_drain(world, channel, bodies, content_type, prefetch, extra_env)
    mean = sum(len(b) for b in bodies) / len(bodies)
    rate = drain.timing.per_second
    above = drain.peak_rss_bytes - drain.idle_rss_bytes
    return {
        "prefetch": prefetch,
        "variant": extra_env is not None,
        "messages": len(bodies),
        "message_mb": mean / _MB,
        "per_s": rate,
        "mb_per_s": None if rate is None else rate * mean / _MB,
        "idle_rss_mb": drain.idle_rss_bytes / _MB,
        "peak_rss_mb": drain.peak_rss_bytes / _MB,
        "peak_above_idle_mb": above / _MB,
        "peak_above_idle_x": above / mean,
        "unmeasured": drain.timing.shortfall,
    }
