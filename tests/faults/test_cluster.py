"""A node of a 3-node cluster is lost mid-run: the workers fail over, nothing is lost.

The cluster (`broker.devnode.cluster`) is started once for these scenarios. Every worker,
agency and the portal is given all three URLs; one worker is given them starting with the
node that leads the ingress queue, so that it sits on the node that is lost. It must
resume on another node within 15 s (its ``broker.resumed`` log line after the loss), and
the run must keep the whole promise. The workers that lose a node for good (killed)
settle in AMQP transactions, whose commits a lost node can cut in half
(`broker.amqp.transactions`); those that lose it for a while settle with confirms.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path

import pytest

from broker.amqp import topology
from broker.devnode.cluster import Cluster, ClusterNode
from tests.faults.harness import FaultRun, Vhost, fault_run
from tests.faults.processes import Worker
from tests.faults.scenario import prepare
from tests.polling import eventually

# The first test's time includes starting the cluster: 9 min once on a machine at load 25.
pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(1500)]

RESUME_WITHIN = 15.0
STOPPED_FOR = 30.0


async def ingress_leader(cluster: Cluster, vhost: str) -> ClusterNode:
    listed = await asyncio.to_thread(cluster.ctl, "list_queues", "-p", vhost, "name", "leader")
    for line in listed.splitlines():
        name, _, leader = line.partition("\t")
        if name == topology.INGRESS_QUEUE:
            return cluster.node(leader.strip())
    raise AssertionError(f"no leader for {topology.INGRESS_QUEUE} in {vhost}")


def resumed_after(worker: Worker, since: float) -> float | None:
    """Seconds from ``since`` (Unix time) to the worker's first resumption after it."""
    for entry in worker.events():
        if entry.get("event") == "broker.resumed":
            at = datetime.fromisoformat(entry["ts"]).timestamp()
            if at > since:
                return at - since
    return None


async def run_losing_a_node(
    cluster: Cluster,
    vhost: Vhost,
    tmp_path: Path,
    lose: Callable[[ClusterNode], Awaitable[None]],
    **env: str,
) -> tuple[FaultRun, float]:
    """Two workers (one on the ingress leader; ``env`` added to theirs), traffic, then
    ``lose(leader)`` once a quarter of the copies has arrived. Returns the run and the
    lost worker's resume time."""
    async with fault_run(cluster.urls(vhost.name), tmp_path) as run:
        leaders: list[ClusterNode] = []

        async def on_and_off_the_leader() -> list[tuple[str, ...]]:
            leaders.append(await ingress_leader(cluster, vhost.name))
            first = leaders[0].index - 1
            return [
                tuple(cluster.urls(vhost.name, first=first)),
                tuple(cluster.urls(vhost.name, first=(first + 1) % len(cluster.nodes))),
            ]

        on_leader, _ = await prepare(run, on_and_off_the_leader, **env)
        leader = leaders[0]
        await run.until_share_accepted(0.25)

        lost_at = time.time()
        await lose(leader)
        await eventually(
            lambda: resumed_after(on_leader, lost_at) is not None,
            what="the worker on the lost node resumed",
            timeout=120,
            interval=0.2,
        )
        resumed = resumed_after(on_leader, lost_at)
        assert resumed is not None
        await run.assert_promise(vhost.queues)
        return run, resumed


async def test_the_ingress_leader_killed_and_restarted_mid_run_loses_nothing(
    cluster: Cluster, cluster_vhost: Vhost, tmp_path: Path
) -> None:
    async def kill_and_restart(node: ClusterNode) -> None:
        await asyncio.to_thread(cluster.kill, node)
        restart = asyncio.create_task(asyncio.to_thread(cluster.start, node))
        lost.append(restart)

    lost: list[asyncio.Task[None]] = []
    _, resumed = await run_losing_a_node(
        cluster, cluster_vhost, tmp_path, kill_and_restart, XBROKER_SETTLEMENT="transaction"
    )
    await asyncio.gather(*lost)
    assert resumed < RESUME_WITHIN, f"resumed {resumed:.1f} s after its node was killed"


async def test_a_node_stopped_for_30_s_mid_run_loses_nothing(
    cluster: Cluster, cluster_vhost: Vhost, tmp_path: Path
) -> None:
    async def stop_for_a_while(node: ClusterNode) -> None:
        await asyncio.to_thread(cluster.stop_app, node)

        async def start_again() -> None:
            await asyncio.sleep(STOPPED_FOR)  # the fault window itself
            await asyncio.to_thread(cluster.start_app, node)

        lost.append(asyncio.create_task(start_again()))

    lost: list[asyncio.Task[None]] = []
    _, resumed = await run_losing_a_node(cluster, cluster_vhost, tmp_path, stop_for_a_while)
    await asyncio.gather(*lost)
    assert resumed < RESUME_WITHIN, f"resumed {resumed:.1f} s after its node was stopped"
