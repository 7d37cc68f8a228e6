"""A watch's round that fails is logged and run again; the watch never dies of it."""

from __future__ import annotations

import logging

import pytest

from broker.worker.periodic import Periodic
from tests.polling import eventually


async def test_a_failed_round_is_logged_and_the_next_round_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds: list[int] = []

    async def round() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 1:
            raise ValueError("the first round fails")

    periodic = Periodic("watch", round, 0.01, logging.getLogger("xbroker.test"))
    with caplog.at_level(logging.WARNING, logger="xbroker.test"):
        periodic.start()
        try:
            await eventually(lambda: len(rounds) >= 3, what="rounds after the failed one")
        finally:
            await periodic.stop()

    assert any("watch.failed" in r.getMessage() for r in caplog.records)
