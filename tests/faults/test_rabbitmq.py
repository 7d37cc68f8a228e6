"""RabbitMQ stops taking publishes for 20 s: nothing is lost, nothing handled twice.

Memory alarm: the node blocks every publishing connection, the broker's, the portal's and
the agencies' alike; their confirms time out. Confirms at the agency: a proxy between the
agencies and the node holds back everything the node sends them for 20 s, so the agencies'
delivery receipts go unconfirmed while the rest of the system runs on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from broker import devnode
from tests.faults.harness import Vhost, fault_run
from tests.faults.proxy import StallingProxy
from tests.faults.scenario import with_fault

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(900)]

MEMORY_ALARM = "{resource_limit, memory, node()}"


@contextmanager
def memory_alarm() -> Iterator[None]:
    """The node's memory alarm, raised by hand: it blocks every publishing connection."""
    devnode.node_eval(f"rabbit_alarm:set_alarm({{{MEMORY_ALARM}, []}}).")
    try:
        yield
    finally:
        devnode.node_eval(f"rabbit_alarm:clear_alarm({MEMORY_ALARM}).")


async def test_a_memory_alarm_of_20_s_loses_and_duplicates_nothing(
    node_vhost: Vhost, tmp_path: Path
) -> None:
    async with fault_run([node_vhost.url], tmp_path) as run:
        paused = await with_fault(run, memory_alarm)

        await run.assert_promise(node_vhost.queues)
        assert paused, "no worker reported the blocked publishes on /readyz"
        assert {e["fault"] for e in run.fault_events("fault.began")} >= {"publish"}


async def test_confirms_timing_out_at_the_agencies_for_20_s_lose_and_duplicate_nothing(
    node_vhost: Vhost, tmp_path: Path
) -> None:
    async with (
        StallingProxy(node_vhost.url) as proxy,
        fault_run([node_vhost.url], tmp_path, agency_urls=[proxy.url]) as run,
    ):
        await with_fault(run, proxy.stalled)

        await run.assert_promise(node_vhost.queues)
        assert sum(stats["receipt_retries"] for stats in run.agency_stats) > 0, (
            "no delivery receipt timed out: the fault did not bite"
        )
