"""The machine a run measured on, and the figures as a table.

The figures travel as one plain JSON-ready dict (``bench.run.measure`` builds it,
``--json`` writes it unchanged); this module only reads it.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["load_average", "machine", "render"]


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other work on the machine skews figures)."""
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return 0.0


def _rabbitmq_version() -> str:
    try:
        done = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "rabbitmq-server"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip() or "unknown"


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count() or 1,
        "cpu": _cpu_model(),
        "ram_gib": _memory_gib(),
        "python": platform.python_version(),
        "rabbitmq": _rabbitmq_version(),
    }


_NONE = "n/a"  # a rate the run could not time (see "Not measured")


def _cell(value: object) -> str:
    if value is None:
        return _NONE
    return f"{value:,.1f}" if isinstance(value, float) else str(value)


def _share(value: float | None) -> str:
    return _NONE if value is None else f"{value:.1%}"


def _rate(value: float | None, digits: int = 1) -> str:
    return _NONE if value is None else f"{value:,.{digits}f}"


def _row(cells: Sequence[object], widths: Sequence[int]) -> str:
    out = []
    for index, (cell, width) in enumerate(zip(cells, widths, strict=True)):
        text = _cell(cell)
        out.append(text.ljust(width) if index == 0 else text.rjust(width))
    return "  " + " ".join(out)


def _table(title: str, head: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    cells = [list(head), *[list(r) for r in rows]]
    widths = [max(len(_cell(c)) for c in column) for column in zip(*cells, strict=True)]
    return ["", title, _row(head, widths), *(_row(r, widths) for r in rows)]


def _relay_backlogs(figures: Mapping[str, Any]) -> str:
    """The relays' backlogs where they were grown past the broker's to give a rate."""
    grown = [
        f"{key} {name} {size:,}"
        for name, t in figures["throughput"].items()
        for key, size in t.get("relay_messages", {}).items()
        if size != t["messages"]
    ]
    return f"; relay backlogs grown to give a rate: {', '.join(grown)}" if grown else ""


def _unmeasured(figures: Mapping[str, Any]) -> list[str]:
    """Why a rate shows as n/a: its drain was too short to time."""
    notes = [
        f"  {name} {key}: {why}"
        for name, t in figures["throughput"].items()
        for key, why in t.get("unmeasured", {}).items()
    ]
    if figures["memory"].get("unmeasured"):
        notes.append(f"  memory drain: {figures['memory']['unmeasured']}")
    return ["", "Not measured (n/a above)", *notes] if notes else []


def render(figures: Mapping[str, Any]) -> str:
    """The figures of one run as a plain-text table."""
    m, run = figures["machine"], figures["run"]
    lines = [
        f"xbroker benchmark ({'quick' if run['quick'] else 'full'} run) on {m['nproc']} cores, "
        f"{m['cpu']}, {m['ram_gib']} GiB RAM, RabbitMQ {m['rabbitmq']}, Python {m['python']}",
        f"load average before {run['load_before']}, after {run['load_after']}; "
        f"{run['seconds']:.0f} s; worker event loop {run['loop']}, prefetch {run['prefetch']}",
    ]
    if figures.get("targets"):
        lines += _table(
            "Targets (figures of this run; latency on a loaded machine says nothing of a "
            "quiet one)",
            ["what", "figure", "target", "met"],
            [
                [t["what"], t["figure"], t["target"], {True: "yes", False: "NO"}.get(t["met"], "-")]
                for t in figures["targets"]
            ],
        )
    lines += _table(
        "Messages (size of the content before signing, and signed)",
        ["class", "standard", "content B", "signed B"],
        [
            [name, c["standard"], c["content_bytes"], c["signed_bytes"]]
            for name, c in figures["messages"].items()
        ],
    )
    n = run["workers"]
    rows = []
    for name, t in figures["throughput"].items():
        rows.append(
            [
                name,
                t["messages"],
                t["relay_1"],
                t["broker_1"],
                _share(t["ratio_1"]),
                t[f"relay_{n}"],
                t[f"broker_{n}"],
                _share(t[f"ratio_{n}"]),
            ]
        )
    lines += _table(
        "Throughput, messages/s (backlog drained; relay = bare RabbitMQ relay; "
        "ratio = broker / relay)" + _relay_backlogs(figures),
        [
            "class",
            "backlog",
            "relay x1",
            "broker x1",
            "ratio",
            f"relay x{n}",
            f"broker x{n}",
            "ratio",
        ],
        rows,
    )
    first_name, first = next(iter(figures["throughput"].items()))
    if "relay2_1" in first:
        lines += _table(
            f"The broker's AMQP work alone, {first_name}: a relay that consumes, publishes "
            "twice (copy and receipt, together, each confirmed) and acks; ratio = broker / it",
            ["processes", "relay, 1 publish", "relay, 2 publishes", "broker", "ratio"],
            [
                [
                    f"x{k}",
                    first[f"relay_{k}"],
                    first[f"relay2_{k}"],
                    first[f"broker_{k}"],
                    _share(first[f"protocol_ratio_{k}"]),
                ]
                for k in sorted({1, n})
            ],
        )
    lat = figures["latency"]
    lines += _table(
        f"Latency, ms, {lat['class']}, {lat['workers']} broker workers, agency and portal in "
        f"processes of their own; offered load as a share of the round trip's maximum, "
        f"{lat['maximum_per_s']:,.0f} msg/s (delivered receipts per second for "
        f"{lat['saturation']['sent']:,} messages published unpaced; the ingress alone drained "
        f"{_rate(lat['ingress_maximum_per_s'], 0)} msg/s). agency = publish → handler; receipt = "
        "publish → delivered receipt at the portal; completed/s below offered/s: the load was "
        "more than the round trip carries; stall = the workers' event loops held up by their "
        "own work, worst and how many of 5 ms or more; bare = receipt through RabbitMQ's four "
        "hops alone at the same load (bench.floor)",
        [
            *("load", "offered/s", "achieved/s", "completed/s", "sent", "handled", "receipted"),
            *("agency p50", "p95", "p99", "receipt p50", "p95", "p99", "p99.9"),
            *("stall ms", "≥5 ms", "bare p50", "p99", "p99.9"),
        ],
        [
            [
                f"{r['share']:.0%}",
                r["offered_per_s"],
                r["achieved_per_s"],
                r["completed_per_s"],
                r["sent"],
                r["delivered"],
                r["receipted"],
                r["agency"]["p50_ms"],
                r["agency"]["p95_ms"],
                r["agency"]["p99_ms"],
                r["receipt"]["p50_ms"],
                r["receipt"]["p95_ms"],
                r["receipt"]["p99_ms"],
                r["receipt"].get("p999_ms"),
                r.get("stalls", {}).get("worst_ms"),
                r.get("stalls", {}).get("over_5ms"),
                *(bare["receipt"][k] if bare else None for k in ("p50_ms", "p99_ms", "p999_ms")),
            ]
            for r, bare in zip(
                lat["loads"], lat.get("floor") or [None] * len(lat["loads"]), strict=True
            )
        ],
    )
    sync = lat.get("disk_sync")
    if sync:
        lines += [
            "",
            f"fdatasync of 4 KiB in the run folder ({sync['count']:,} times, what each durable "
            f"hop waits for): p50 {sync['p50_ms']:.2f} ms, p99 {sync['p99_ms']:.2f} ms, "
            f"max {sync['max_ms']:.1f} ms",
        ]
    cpu = lat.get("cpu_ms_per_message")
    if cpu:
        lines += [
            "",
            "CPU per round trip at the maximum, ms per message (all on the same cores): "
            + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()),
        ]
    mem = figures["memory"]
    note = "" if mem["backlog"] >= 100_000 else " (the full run drains 100,000)"
    lines += [
        "",
        f"Memory: one worker draining a backlog of {mem['backlog']:,} {mem['class']} messages"
        f"{note}: peak RSS {mem['peak_rss_mb']:.1f} MB (RSS at start {mem['rss_start_mb']:.1f} MB, "
        f"at end {mem['rss_end_mb']:.1f} MB), {_rate(mem['per_s'])} msg/s",
    ]
    micro = figures["micro"]
    stages = list(next(iter(micro["classes"].values())).keys()) if micro["classes"] else []
    lines += _table(
        "Micro, µs per message (verify excludes parsing; verify_floor = c14n + SHA-256 + "
        "one public-key verification)",
        ["class", *stages],
        [[name, *(c[s] for s in stages)] for name, c in micro["classes"].items()],
    )
    for module, values in micro["modules"].items():
        lines += _table(
            f"Micro, bench.{module}",
            ["figure", "value"],
            [[k, v] for k, v in values.items()],
        )
    profile = figures.get("profile")
    if profile:
        lines += _table(
            f"Profile of one worker draining {profile['class']} ({profile['samples']:,} busy "
            "samples): share of busy time per stage (inclusive, stages overlap)",
            ["stage", "share"],
            [[k, f"{v:.1%}"] for k, v in profile["stages"].items()],
        )
        lines += _table(
            "Profile: top functions by own time",
            ["function", "share"],
            [[k, f"{v:.1%}"] for k, v in profile["top_self"].items()],
        )
    lines += _grown(figures) + _large(figures) + _http(figures)
    lines += _unmeasured(figures)
    return "\n".join(lines)


def _grown(figures: Mapping[str, Any]) -> list[str]:
    scale = figures.get("scale")
    if not scale:
        return []
    lines = _table(
        "A growing directory (bench.scale): load and reload wall (CPU) seconds, memory "
        "kept, routing µs per message and its ratio to the smallest directory",
        ["agencies", "load s", "CPU s", "reload s", "CPU s", "MB", "route µs", "ratio"],
        [
            [
                f["agencies"],
                f["load_s"],
                f["load_cpu_s"],
                f["reload_s"],
                f["reload_cpu_s"],
                f["retained_mb"],
                f["route_us"],
                f["route_ratio"],
            ]
            for f in scale["directories"].values()
        ],
    )
    return lines + _table(
        "A growing catalog (generated 75-file standards): load seconds, identify + "
        "validate µs per message and its ratio to one standard",
        ["standards", "load s", "validate µs", "ratio"],
        [
            [f["standards"], f["load_s"], f["validate_us"], f["validate_ratio"]]
            for f in scale["catalogs"].values()
        ],
    )


def _large(figures: Mapping[str, Any]) -> list[str]:
    large = figures.get("large")
    if not large:
        return []
    return _table(
        "Large messages, one worker (bench.large): bundle = signed XML + attachments, "
        "xml = the XML alone that size; RSS in MB, peak above idle also in message sizes",
        ["message", "prefetch", "MB", "msg/s", "MB/s", "idle RSS", "peak RSS", "above", "×"],
        [
            [
                name,
                f["prefetch"],
                f["message_mb"],
                f["per_s"],
                f["mb_per_s"],
                f["idle_rss_mb"],
                f["peak_rss_mb"],
                f["peak_above_idle_mb"],
                f["peak_above_idle_x"],
            ]
            for name, f in large.items()
        ],
    )


def _http(figures: Mapping[str, Any]) -> list[str]:
    http = figures.get("http")
    if not http:
        return []
    n, many = http["processes"], http["many_clients"]
    lines = _table(
        "HTTP ingress (bench.http), no worker draining: answered 202 per second, and "
        "the same messages published to the ingress over AMQP with confirms",
        ["path", "msg/s"],
        [["AMQP publish, 32 in flight", http["amqp_max"]]]
        + [
            [f"HTTP, {k} API process(es), 32 connections", http[f"http_max_{k}"]]
            for k in sorted({1, n})
        ],
    )
    return [
        *lines,
        "",
        f"{many['connections']:,} keep-alive clients on {n} API process(es) (opened in "
        f"{many['open_seconds']:.1f} s), {many['offered_per_s']:.0f} requests/s offered, "
        f"{many['achieved_per_s']:.0f}/s sent, answers {many['statuses']}, reconnects "
        f"{many['reconnects']}: p50 {many['p50_ms']:.1f} ms, p95 {many['p95_ms']:.1f}, "
        f"p99 {many['p99_ms']:.1f}, p99.9 {many['p999_ms']:.1f}",
    ]
