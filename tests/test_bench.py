"""The benchmark runs end to end on tiny counts against the test session's RabbitMQ.

It asserts that every figure is there and plausible in kind (a rate is positive, a
percentile is a number of milliseconds), never how fast anything is.
"""

from __future__ import annotations

import json
import math
from typing import Any

from bench.report import render
from bench.run import LOAD_SHARES, Options, measure


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


async def test_a_tiny_run_yields_every_figure(amqp_url: str) -> None:
    figures = await measure(
        Options(
            quick=True,
            amqp_url=amqp_url,
            workers=2,
            count=100,
            backlog=100,
            latency_seconds=0.3,
            profile=False,
        )
    )

    assert set(figures["messages"]) == {
        "2kb-ecdsa",
        "2kb-rsa",
        "10kb-ecdsa",
        "10kb-rsa",
        "100kb-ecdsa",
        "100kb-rsa",
    }
    throughput = figures["throughput"]["2kb-ecdsa"]
    for key in ("relay_1", "broker_1", "ratio_1", "relay_2", "broker_2", "ratio_2", "relay2_2"):
        assert _positive(throughput[key]), key
    latency = figures["latency"]
    assert _positive(latency["maximum_per_s"])
    assert latency["ingress_maximum_per_s"] == throughput["broker_2"]
    assert latency["saturation"]["receipted"] == latency["saturation"]["sent"]
    assert [load["share"] for load in latency["loads"]] == list(LOAD_SHARES)
    for load in latency["loads"]:
        assert load["receipted"] == load["sent"]
        assert _positive(load["completed_per_s"])
        for clock in ("agency", "receipt"):
            assert all(_positive(load[clock][p]) for p in ("p50_ms", "p95_ms", "p99_ms"))
    assert figures["memory"]["backlog"] == 100
    assert _positive(figures["memory"]["peak_rss_mb"])
    for stages in figures["micro"]["classes"].values():
        assert all(_positive(stages[s]) for s in ("parse", "verify", "verify_floor", "validate"))
        assert all(_positive(stages[s]) for s in ("identify", "route", "pipeline"))
    assert {"signing", "standards"} <= set(figures["micro"]["modules"])
    json.dumps(figures)  # what --json writes
    table = render(figures)
    for section in ("Throughput", "AMQP work alone", "Latency", "Memory", "Micro"):
        assert section in table
