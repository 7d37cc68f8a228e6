"""Each target of the benchmark beside the figure of this run that it is about.

Read from the figures dict of ``bench.run.measure``; a row is (what, figure, target,
met). ``met`` is None where the run has no figure, or where the target names no bound
(the figure is reported only). One run cannot show a target that asks for several
(receipt p99 in 5 of 5 consecutive runs): the row shows this run's share of it. Latency
measured on a busy machine says nothing about a quiet one: the load average of the run
is printed above the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["Target", "targets"]


class Target(NamedTuple):
    what: str
    figure: str
    target: str
    met: bool | None


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def _at_least(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}{unit}"


def _throughput(figures: Mapping[str, Any]) -> list[Target]:
    n = figures["run"]["workers"]
    first = next(iter(figures["throughput"].values()))
    ratio = first.get(f"protocol_ratio_{n}")
    rows = [Target(f"broker x{n} / relay2 x{n}", _fmt(ratio), "≥ 0.50", _at_least(ratio, 0.5))]
    lat = figures["latency"]
    ingress, rt = lat["ingress_maximum_per_s"], lat["maximum_per_s"]
    share = rt / ingress if ingress and rt else None
    rows.append(
        Target(
            "round-trip maximum / ingress maximum",
            f"{_fmt(share)} ({_fmt(rt, digits=0)} / {_fmt(ingress, digits=0)} msg/s)",
            "≥ 0.55",
            _at_least(share, 0.55),
        )
    )
    half = next((r for r in lat["loads"] if abs(r["share"] - 0.5) < 1e-9), None)
    if half is not None:
        receipt = half["receipt"]
        index = lat["loads"].index(half)
        bare = (lat.get("floor") or [None] * (index + 1))[index]
        alone = f"; RabbitMQ alone {_fmt(bare['receipt']['p99_ms'], ' ms', 1)}" if bare else ""
        rows.append(
            Target(
                "receipt p99 at 50 % of the round-trip maximum (p99.9)",
                f"{_fmt(receipt['p99_ms'], ' ms', 1)} ({_fmt(receipt['p999_ms'], ' ms', 1)})"
                + alone,
                "< 20 ms in 5 of 5 consecutive runs (this run: 1)",
                None if receipt["p99_ms"] != receipt["p99_ms"] else receipt["p99_ms"] < 20,
            )
        )
    return rows


def _scale(figures: Mapping[str, Any]) -> list[Target]:
    scale = figures.get("scale")
    if not scale:
        return []
    dirs, cats = scale["directories"], scale["catalogs"]
    small, large = dirs[min(dirs, key=int)], dirs[max(dirs, key=int)]
    rows = [
        Target(
            f"routing per message, {large['agencies']:,} / {small['agencies']:,} agencies",
            f"{_fmt(large['route_ratio'])}× ({_fmt(large['route_us'], ' µs', 1)} / "
            f"{_fmt(small['route_us'], ' µs', 1)})",
            "≤ 2×",
            _at_most(large["route_ratio"], 2.0),
        ),
        Target(
            f"directory reload, {large['agencies']:,} agencies (CPU)",
            f"{_fmt(large['reload_s'], ' s')} ({_fmt(large['reload_cpu_s'], ' s')})",
            "< 2 s",
            _at_most(large["reload_s"], 2.0),
        ),
        Target(
            f"directory memory, {large['agencies']:,} agencies",
            _fmt(large["retained_mb"], " MB", 1),
            "reported",
            None,
        ),
    ]
    few, many = cats[min(cats, key=int)], cats[max(cats, key=int)]
    rows.append(
        Target(
            f"validation per message, {many['standards']} / {few['standards']} standards",
            f"{_fmt(many['validate_ratio'])}× ({_fmt(many['validate_us'], ' µs', 1)} / "
            f"{_fmt(few['validate_us'], ' µs', 1)})",
            "flat (≤ 2×)",
            _at_most(many["validate_ratio"], 2.0),
        )
    )
    return rows


def _large(figures: Mapping[str, Any]) -> list[Target]:
    rows = []
    for name, f in (figures.get("large") or {}).items():
        if f["prefetch"] != 1 or f.get("variant"):
            rows.append(
                Target(
                    f"{name}: peak RSS above idle (MB/s)",
                    f"{_fmt(f['peak_above_idle_mb'], ' MB', 0)} ({_fmt(f['mb_per_s'], '', 1)})",
                    "reported",
                    None,
                )
            )
            continue
        rows.append(
            Target(
                f"{name}: peak RSS above idle / message size (MB/s)",
                f"{_fmt(f['peak_above_idle_x'], '×', 1)} ({_fmt(f['mb_per_s'], '', 1)})",
                "≤ 4×",
                _at_most(f["peak_above_idle_x"], 4.0),
            )
        )
    return rows


def _http(figures: Mapping[str, Any]) -> list[Target]:
    http = figures.get("http")
    if not http:
        return []
    n = http["processes"]
    many = http["many_clients"]
    return [
        Target(
            f"HTTP ingress x{n} / AMQP ingress",
            f"{_fmt(http['http_ratio'])} ({_fmt(http[f'http_max_{n}'], digits=0)} / "
            f"{_fmt(http['amqp_max'], digits=0)} msg/s; x1 {_fmt(http['http_max_1'], digits=0)})",
            "reported",
            None,
        ),
        Target(
            f"{many['connections']:,} keep-alive clients at 50 % of HTTP x{n}: p99 (p99.9)",
            f"{_fmt(many['p99_ms'], ' ms', 1)} ({_fmt(many['p999_ms'], ' ms', 1)})",
            "< 100 ms",
            None if many["p99_ms"] != many["p99_ms"] else many["p99_ms"] < 100,
        ),
    ]


def targets(figures: Mapping[str, Any]) -> list[Target]:
    """Every target with its figure from ``figures``, in the performance page's order."""
    return [*_throughput(figures), *_scale(figures), *_large(figures), *_http(figures)]
