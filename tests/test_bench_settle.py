"""The settling benchmark runs end to end on small counts against the test session's RabbitMQ.

Rates are never asserted. What a SIGKILL leaves is: a relay that commits each burst's
publishes with its acks in one transaction leaves no copy twice and loses nothing, and
the confirming relay loses nothing either.
"""

from __future__ import annotations

import pytest

from bench.relay import RELAY_OUT, RELAY_SIDE, Settle
from bench.settle import measure, render

COUNT = 400


@pytest.mark.timeout(900)
async def test_a_killed_transactional_relay_leaves_no_copy_twice(amqp_url: str) -> None:
    figures = await measure(COUNT, kills=2, amqp_url=amqp_url)

    assert set(figures["settle"]) == {s.value for s in Settle}
    for name, row in figures["settle"].items():
        assert (row["per_second"] or 0) > 0 or row["unmeasured"], name
        assert len(row["rounds"]) == 2
        for killed in row["rounds"]:
            assert 0 < killed["killed_at"] < 2 * COUNT, (name, killed)
            assert killed["lost"] == 0, (name, killed)
    for killed in figures["settle"][Settle.TX.value]["rounds"]:
        assert killed["published_twice"] == {RELAY_OUT: 0, RELAY_SIDE: 0}, killed
        assert killed["most_copies"] == 1
    assert "published twice" in render(figures)
