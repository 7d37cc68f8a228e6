"""The flow of a fault scenario: publish, start the workers, inject the fault, lift it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager

from broker.amqp import publishing, topology
from broker.app import load_parts
from broker.settings import Settings
from tests.faults.harness import FAULT_SECONDS, FaultRun
from tests.faults.processes import Worker
from tests.polling import eventually


async def not_ready_during(run: FaultRun, seconds: float) -> set[str]:
    """Watch the workers' readiness for ``seconds``; the log names of those seen not ready."""
    seen: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        for worker in run.workers:
            if not await worker.ready():
                seen.add(worker.log.name)
        await asyncio.sleep(0.5)
    return seen


async def declare_topology(urls: Sequence[str], settings: Settings) -> None:
    """What ``xbroker run`` declares at start, declared before any worker runs."""
    directory = load_parts(settings).directory
    connection, channel = await publishing.connect(urls, "xbroker-test-topology")
    async with connection:
        exchanges = await topology.declare_core(channel, settings.delivery_limit)
        await topology.declare_for_directory(channel, exchanges, directory, settings.delivery_limit)


WorkerUrls = Callable[[], Awaitable[list[tuple[str, ...]]]]
"""Which URLs each worker gets, asked once the topology is declared."""


async def prepare(run: FaultRun, worker_urls: WorkerUrls | None = None, **env: str) -> list[Worker]:
    """Declare the topology, start the agencies and the workers (one per URL list from
    ``worker_urls``; two with the run's URLs without it; ``env`` added to theirs), sign
    and publish every message meanwhile, and return the workers once they are ready."""
    await declare_topology(run.urls, run.settings)
    for agency in run.agencies:
        agency.start()
    urls = await worker_urls() if worker_urls is not None else [run.urls, run.urls]
    workers = [run.start_worker(u, **env) for u in urls]
    await run.sign()  # while the processes start
    await run.portal.start()
    for agency in run.agencies:
        await eventually(
            agency.ready, what=f"agency {agency.kennung} ready", timeout=120, interval=0.2
        )
    await run.publish_all()
    for worker in workers:
        await eventually(worker.ready, what=f"{worker.log.name} ready", timeout=120, interval=0.2)
    run.mark("prepared")
    return workers


Fault = Callable[[], AbstractContextManager[object]]
"""Makes the context in which a fault lasts."""


async def with_fault(run: FaultRun, fault: Fault) -> set[str]:
    """The usual scenario: publish, two workers, ``fault`` once they have accepted a
    quarter of the messages, for `FAULT_SECONDS`. Returns the workers seen not ready
    meanwhile."""
    await prepare(run)
    await run.until_share_accepted(0.25)
    run.mark("fault")
    with fault():
        return await not_ready_during(run, FAULT_SECONDS)
