"""The sealing benchmark runs end to end on tiny counts against the test session's RabbitMQ.

It asserts that every figure is there and plausible in kind, never how fast anything is.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from bench.sealing import CLASSES, render, run

# Broker drains of one worker run at a few hundred messages per second on these
# machines; 500 2 KB messages (100 of 100 KB) span the polls a rate needs
# (bench.queues.MIN_WINDOW_POLLS) many times over.
COUNT = 500


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


# The bench's own deadlines are longer than pytest-timeout's default on a busy machine.
@pytest.mark.timeout(900)
async def test_a_small_sealing_run_yields_clear_and_sealed_figures(amqp_url: str) -> None:
    figures = await run(count=COUNT, workers=1, repeats=1, amqp_url=amqp_url, budget=0.01)

    assert set(figures["classes"]) == {cls.name for cls in CLASSES} == {"2kb-ecdsa", "100kb-ecdsa"}
    for row in figures["classes"].values():
        assert row["unmeasured"] == []
        assert all(_positive(row[k]) for k in ("clear_per_s", "sealed_per_s", "ratio"))
        assert [len(row["runs"][m]) for m in ("clear", "sealed")] == [1, 1]
        micro = row["micro"]
        assert all(_positive(micro[k]) for k in ("seal_us", "open_us"))
        assert micro["sealed_bytes"] > micro["clear_bytes"]
    assert "100kb-ecdsa" in render(figures)
