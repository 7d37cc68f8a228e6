"""SIGTERM at any moment of a worker's start-up, or twice in its stop: it exits 0.

A steady worker carries the traffic; beside it, workers are started and stopped again at
moments spread over their start-up (loading standards, opening stores, connecting,
declaring, the first messages), and one gets a second SIGTERM while it stops. Every one
must exit 0, and the run must keep the whole promise.

The moments count from the worker's first log line (``broker.starting``): before it, the
Python interpreter itself is still starting, and a SIGTERM then ends the process by the
default action, before it has done anything.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from tests.faults.harness import Vhost, fault_run
from tests.faults.scenario import prepare
from tests.polling import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.timeout(900)]

# Seconds after its first log line at which a starting worker gets SIGTERM; on these
# machines a worker takes 2-10 s from there to consuming.
MOMENTS = (0.0, 0.3, 0.7, 1.2, 2.0, 3.0, 5.0, 8.0)


async def test_sigterm_during_start_up_exits_0_and_loses_nothing(
    node_vhost: Vhost, tmp_path: Path
) -> None:
    async with fault_run([node_vhost.url], tmp_path) as run:

        async def one_steady_worker() -> list[tuple[str, ...]]:
            return [run.urls]

        await prepare(run, one_steady_worker)
        await run.until_share_accepted(0.1)

        async def stopped_at(moment: float) -> int:
            worker = run.start_worker()
            await eventually(
                lambda: worker.logged("broker.starting"), what="first log line", timeout=60
            )
            await asyncio.sleep(moment)  # the moment of start-up this case is about
            worker.process.send_signal(signal.SIGTERM)
            return await asyncio.to_thread(worker.process.wait, 60)

        codes = dict(zip(MOMENTS, await asyncio.gather(*map(stopped_at, MOMENTS)), strict=True))

        twice = run.start_worker()
        await eventually(twice.ready, what="the last worker ready", timeout=120, interval=0.2)
        twice.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.2)  # inside its stop
        twice.process.send_signal(signal.SIGTERM)
        codes[-1.0] = await asyncio.to_thread(twice.process.wait, 60)

        await run.assert_promise(node_vhost.queues)
        assert codes == dict.fromkeys(codes, 0), f"exit codes by moment: {codes}"
