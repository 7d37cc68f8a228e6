"""bench.hostile runs end to end on one cheap case: every figure is there and plausible in
kind (a decision, positive times and sizes), never how fast anything is."""

from __future__ import annotations

import math

from bench.hostile import CASES, measure, render


def test_one_case_yields_its_figures_beside_a_valid_message_of_its_size() -> None:
    case = next(c for c in CASES if c.name.startswith("certificate flood"))

    (figure,) = measure([case], yardstick=False)

    assert figure.decision == "too-many-certificates"
    for value in (figure.seconds, figure.valid_seconds, figure.peak_rss_mb, figure.ratio):
        assert math.isfinite(value) and value > 0
    assert figure.bytes > 1_000_000
    assert case.name in render([figure])
