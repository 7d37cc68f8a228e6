"""A robust AMQP connection to the first node of a cluster that answers.

An installation names every node of its RabbitMQ cluster (``amqp_urls``). The first
connection tries them in order. Once connected, aio-pika's robust connection restores
channels, queues and consumers after a loss by itself, but it knows one URL only: after
the loss of its node it would try that node alone, every few seconds, until it came
back (36-41 s of doing nothing was measured with a node stopped for 30 s). So every
failed attempt and every lost connection moves this connection on to the next URL:
a worker on a lost node reconnects to a surviving one at its next attempt.

The URLs may differ in host, port, credentials and TLS files; aiormq reads the TLS
files from each URL's query, so a node with a certificate of its own is fine.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import CONNECTION_EXCEPTIONS
from aio_pika.robust_connection import RobustConnection
from yarl import URL

from broker.logs import event

__all__ = [
    "CONNECT_TIMEOUT_SECONDS",
    "RECONNECT_SECONDS",
    "FailoverConnection",
    "connect_first",
    "redacted",
]

log = logging.getLogger("xbroker.amqp")

RECONNECT_SECONDS = 1.0
"""Pause after a failed attempt before the next URL is tried (aio-pika's default is 5 s)."""

CONNECT_TIMEOUT_SECONDS = 10.0
"""Bound of one attempt: a node that drops packets must not hold the attempt for minutes."""


def redacted(url: str | URL) -> str:
    """``url`` without its password, fit for a log line."""
    parsed = URL(str(url))
    return str(parsed.with_password("******") if parsed.password else parsed)


class FailoverConnection(RobustConnection):
    """A robust connection that moves to the next of ``urls`` after every failure."""

    def __init__(self, urls: Sequence[str], **kwargs: Any) -> None:
        if not urls:
            raise ValueError("at least one AMQP URL is needed")
        self.urls = tuple(URL(u) for u in urls)
        self._index = 0
        super().__init__(self.urls[0], **kwargs)

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # Called both when an established connection is lost and when an attempt to
        # connect fails (aio-pika hands the attempt's error to the same callback).
        if not (self._close_called or self.is_closed) and len(self.urls) > 1:
            lost = self.url
            self._index = (self._index + 1) % len(self.urls)
            self.url = self.urls[self._index]
            event(
                log,
                "amqp.failover",
                logging.WARNING,
                lost=redacted(lost),
                next=redacted(self.url),
            )
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        await super()._on_connected()
        event(log, "amqp.connected", url=redacted(self.url))


async def connect_first(
    urls: str | Sequence[str], name: str, *, reconnect_seconds: float = RECONNECT_SECONDS
) -> AbstractRobustConnection:
    """Connect to the first of ``urls`` (one URL or several) that answers; the
    connection then fails over.

    Raises the last attempt's error when none answers.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    failure: BaseException | None = None
    for start in range(len(urls)):
        order = [*urls[start:], *urls[:start]]
        connection = FailoverConnection(
            order,
            client_properties={"connection_name": name},
            reconnect_interval=reconnect_seconds,
        )
        try:
            await connection.connect(timeout=CONNECT_TIMEOUT_SECONDS)
        except CONNECTION_EXCEPTIONS as exc:
            failure = exc
            await connection.close()
            event(log, "amqp.unreachable", logging.WARNING, url=redacted(order[0]), error=str(exc))
            continue
        return connection
    assert failure is not None
    raise failure
