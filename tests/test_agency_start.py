"""An agency whose inbox cannot be consumed yet keeps trying to start.

A quorum queue declared a moment ago (an inbox deleted and declared again by the broker's
topology repair) can exist before its Raft member runs; RabbitMQ 3.10 answers a consume
then by closing the whole connection with INTERNAL_ERROR. Here the inbox's member is
stopped on purpose while a copy waits in it: the agency connects again until the member
is back, then receives the copy and confirms it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiormq
import pytest

from broker.amqp import topology
from broker.ops.tenancy.accounts import vhost_of
from broker.sdk.agency import IN_MEMORY, Delivery
from monitoring.labels import ReceiptKind
from tests.polling import eventually
from tests.world import World, agency_client, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 60.0
AGENCY = "psw:02000000"


@pytest.fixture
async def world(module_vhost_url: str, tmp_path: Path) -> AsyncIterator[World]:
    async with running_world(module_vhost_url, tmp_path / "state", agencies=set()) as running:
        yield running


def raft_member(vhost: str, queue: str, action: str) -> str:
    """An expression for ``rabbitmqctl eval`` running ``ra:<action>`` on the queue's member."""
    return (
        f'{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<"{vhost}">>, queue, <<"{queue}">>)),'
        f" ra:{action}(quorum_queues, amqqueue:get_pid(Q))."
    )


async def test_an_agency_starts_once_its_inbox_runs_again(
    world: World, module_vhost_url: str, rabbitmqctl: Callable[..., str]
) -> None:
    vhost = vhost_of(module_vhost_url)
    inbox = topology.agency_queue(AGENCY)
    uuid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))
    await world.settled(uuid, TIMEOUT)

    received: list[str] = []

    async def handle(delivery: Delivery) -> None:
        received.append(delivery.uuid)

    client = agency_client(
        module_vhost_url, world.settings, world.parts, AGENCY, handle, seen_path=IN_MEMORY
    )
    await asyncio.to_thread(rabbitmqctl, "eval", raft_member(vhost, inbox, "stop_server"))
    starting = asyncio.create_task(client.start(timeout=TIMEOUT))
    try:
        await eventually(
            lambda: client.start_retries >= 2,
            what="the consume refused twice",
            timeout=TIMEOUT,
        )
        assert not starting.done()
        await asyncio.to_thread(rabbitmqctl, "eval", raft_member(vhost, inbox, "restart_server"))
        await starting
        state = await world.portal.wait_final(uuid, TIMEOUT)
    finally:
        starting.cancel()
        await client.close()

    assert received == [uuid]
    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]


async def test_an_agency_gives_up_starting_after_its_timeout(
    world: World, module_vhost_url: str, rabbitmqctl: Callable[..., str]
) -> None:
    vhost = vhost_of(module_vhost_url)
    inbox = topology.agency_queue(AGENCY)

    async def handle(delivery: Delivery) -> None:
        raise AssertionError("nothing to receive")

    client = agency_client(
        module_vhost_url, world.settings, world.parts, AGENCY, handle, seen_path=IN_MEMORY
    )
    await asyncio.to_thread(rabbitmqctl, "eval", raft_member(vhost, inbox, "stop_server"))
    try:
        with pytest.raises(aiormq.exceptions.ConnectionInternalError):
            await client.start(timeout=1.0)
        assert client.start_retries >= 1
    finally:
        await asyncio.to_thread(rabbitmqctl, "eval", raft_member(vhost, inbox, "restart_server"))
        await client.close()
