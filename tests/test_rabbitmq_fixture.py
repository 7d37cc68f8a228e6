"""The session's RabbitMQ fixtures: a private vhost on a real node that carries messages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import aio_pika
import pytest
from pamqp.commands import Basic

if TYPE_CHECKING:  # not importable at run time: a subfolder's conftest can shadow it
    from conftest import RabbitMQ


async def test_quorum_queue_in_the_session_vhost_carries_a_confirmed_message(
    amqp_url: str,
) -> None:
    connection = await aio_pika.connect(amqp_url, timeout=30)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(
            "fixture.roundtrip", durable=True, arguments={"x-queue-type": "quorum"}
        )
        confirmation = await asyncio.wait_for(
            channel.default_exchange.publish(
                aio_pika.Message(b"hello", message_id="m-1"),
                routing_key=queue.name,
                mandatory=True,
            ),
            timeout=5,
        )
        assert isinstance(confirmation, Basic.Ack)
        message = await queue.get(timeout=10)
        await message.ack()
        assert (message.body, message.message_id) == (b"hello", "m-1")
        await queue.delete(if_unused=False, if_empty=False)


def test_session_vhost_is_private_to_this_run(rabbitmq: RabbitMQ) -> None:
    assert rabbitmq.vhost.startswith("xbroker-test-")
    assert rabbitmq.amqp_url.endswith("/" + rabbitmq.vhost)


def test_rabbitmqctl_sees_the_session_vhost(
    rabbitmq: RabbitMQ, rabbitmqctl: Callable[..., str]
) -> None:
    assert rabbitmq.vhost in rabbitmqctl("list_vhosts").split()


def test_tests_using_the_fixture_carry_the_rabbitmq_marker(
    request: pytest.FixtureRequest, amqp_url: str
) -> None:
    assert request.node.get_closest_marker("rabbitmq") is not None
