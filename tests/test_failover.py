"""Several AMQP URLs: tried in order at the first connect and again after every loss.

Against the real node: a URL nobody listens on stands for a lost node, and the node
closing a connection (``rabbitmqctl close_connection``) for the loss of the node a
client was connected to. ``localhost`` and ``127.0.0.1`` name the same node under two
URLs, so that it shows which URL a connection moved to.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest

from broker.amqp import publishing
from broker.amqp.connection import FailoverConnection, connect_first
from broker.settings import load_settings
from tests.conftest import free_port
from tests.polling import eventually

pytestmark = pytest.mark.rabbitmq


def on_host(url: str, host: str, port: int | None = None) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@{host}:{port or parts.port}"))


def test_xbroker_amqp_urls_lists_the_nodes_comma_separated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("XBROKER_AMQP_URLS", "amqp://a:5672/, amqp://b:5672/,amqp://c:5672/")
    assert load_settings(None).rabbitmq_urls == (
        "amqp://a:5672/",
        "amqp://b:5672/",
        "amqp://c:5672/",
    )


def test_without_amqp_urls_the_one_amqp_url_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XBROKER_AMQP_URLS", raising=False)
    monkeypatch.setenv("XBROKER_AMQP_URL", "amqp://only:5672/")
    assert load_settings(None).rabbitmq_urls == ("amqp://only:5672/",)


async def test_the_first_connect_skips_a_node_that_does_not_answer(amqp_url: str) -> None:
    dead = on_host(amqp_url, "127.0.0.1", free_port())
    connection = await connect_first([dead, amqp_url], "xbroker-test-failover")
    try:
        assert str(connection.url).endswith(urlsplit(amqp_url).path)
        assert urlsplit(str(connection.url)).port == urlsplit(amqp_url).port
    finally:
        await connection.close()


async def test_no_node_answering_raises_the_last_error(amqp_url: str) -> None:
    dead = [on_host(amqp_url, "127.0.0.1", free_port()) for _ in range(2)]
    with pytest.raises(ConnectionError):
        await connect_first(dead, "xbroker-test-failover")


async def test_a_lost_connection_moves_on_to_the_next_url_and_recovers(
    amqp_url: str, rabbitmqctl: Callable[..., str]
) -> None:
    first = on_host(amqp_url, "127.0.0.1")
    second = on_host(amqp_url, "localhost")
    connection, channel = await publishing.connect([first, second], "xbroker-test-moves")
    assert isinstance(connection, FailoverConnection)
    try:
        reconnected = asyncio.Event()
        connection.reconnect_callbacks.add(lambda sender: reconnected.set())
        queue = await channel.declare_queue(
            f"xbroker-test-moves-{secrets.token_hex(4)}", exclusive=True
        )
        for line in rabbitmqctl("list_connections", "pid", "client_properties").splitlines():
            if "xbroker-test-moves" in line:
                await asyncio.to_thread(
                    rabbitmqctl, "close_connection", line.split("\t")[0], "a node lost"
                )
        async with asyncio.timeout(30):
            await reconnected.wait()

        assert urlsplit(str(connection.url)).hostname == "localhost"
        await channel.default_exchange.publish(aio_pika.Message(b"after"), queue.name, timeout=10)
        message = await eventually(
            lambda: queue.get(fail=False), what="the message published after the move"
        )
        assert message.body == b"after"
    finally:
        await connection.close()
