"""Settling consumed messages in AMQP transactions: what a message publishes and its
ack, committed together.

With publisher confirms, a worker that dies after its copies are confirmed and before
its ack leaves them published while the message goes back to its queue; whoever takes
it over publishes them again (docs/scaling.md, "Duplicates when a host dies"). On a
channel in transaction mode (``tx.select``) the publishes and the ack are held by
RabbitMQ until ``tx.commit``: a commit that never arrives does nothing, the message
comes back and nothing of it was published; a commit that arrives does all of it.

The channel is the one the messages are consumed on (an ack belongs to its channel),
and one transaction is open on it at a time, so settlements are committed in groups:
every message settled while a commit is under way joins the next one. A message's
publishes and its ack are written together, never split by a commit. Every settlement
on such a channel must go through here (an ack outside a transaction's commit is never
applied), which is why a failure given back to its queue is settled here too.

A commit that fails (the channel or connection lost) or takes longer than its timeout
(its channel is then closed, so that nothing is left half-known on it) leaves every
message of that transaction with RabbitMQ, unsettled: it is delivered again. Such a
settlement raises `CommitError`, and the caller gives the message up.

What a transaction cannot do: a mandatory publish's return arrives with the commit,
after the ack it came with is applied, so copies go to an exchange with an alternate
exchange rather than with ``mandatory`` (`broker.amqp.topology`); and RabbitMQ applies
a commit queue by queue, so a *node* lost during a commit can apply the ack and not
every publish (https://www.rabbitmq.com/semantics.html).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import aio_pika
import aiormq
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import ChannelInvalidStateError

from broker.errors import PublishError

__all__ = ["CommitError", "Disposition", "Publish", "Transactions"]

log = logging.getLogger("xbroker.broker")


class Disposition(Enum):
    ACK = "ack"  # handled
    DEAD_LETTER = "dead-letter"  # rejected without requeue: its queue dead-letters it
    REQUEUE = "requeue"  # back to its queue, to be delivered again


@dataclass(frozen=True, slots=True)
class Publish:
    """A message to publish in the transaction that settles the consumed one."""

    exchange: str
    routing_key: str
    message: aio_pika.Message


class CommitError(PublishError):
    """The transaction was not committed, or it is not known whether it was: the
    message is left with RabbitMQ, which delivers it again unless the commit went
    through."""


class Transactions:
    """Settles messages consumed on channels in transaction mode; ``timeout``: seconds a
    commit may take."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._lock = asyncio.Lock()  # the staging of one message, or a commit
        self._selected: aiormq.abc.AbstractChannel | None = None  # in transaction mode
        self._open: asyncio.Future[None] | None = None  # the transaction being staged
        self._committer: asyncio.Task[None] | None = None
        self.commits = 0  # transactions committed
        self.settled = 0  # messages settled in them

    async def settle(
        self,
        message: AbstractIncomingMessage,
        publishes: Sequence[Publish] = (),
        disposition: Disposition = Disposition.ACK,
    ) -> None:
        """Publish ``publishes`` and settle ``message`` as ``disposition``, in one committed
        transaction; raise `CommitError` if it was not committed."""
        async with self._lock:
            channel = _channel_of(message)
            if channel is not self._selected:
                await self._select(channel)
            try:
                for publish in publishes:
                    await channel.basic_publish(
                        publish.message.body,
                        exchange=publish.exchange,
                        routing_key=publish.routing_key,
                        properties=publish.message.properties,
                    )
                match disposition:
                    case Disposition.ACK:
                        await message.ack()
                    case Disposition.DEAD_LETTER:
                        await message.reject(requeue=False)
                    case Disposition.REQUEUE:
                        await message.nack(requeue=True)
            except (aiormq.exceptions.AMQPError, ConnectionError) as exc:
                raise CommitError(f"channel lost while settling in a transaction: {exc}") from exc
            if self._open is None:
                self._open = asyncio.get_running_loop().create_future()
            joined = self._open
            if self._committer is None or self._committer.done():
                self._committer = asyncio.create_task(self._commit_all(), name="tx-commit")
        # Shielded: a caller cancelled (at a stop) leaves the commit to the others.
        await asyncio.shield(joined)
        self.settled += 1

    async def _select(self, channel: aiormq.abc.AbstractChannel) -> None:
        """Put a channel (the first, or the one a lost channel was reopened as) in
        transaction mode. What was staged on the channel before it is gone with it."""
        if self._open is not None:
            self._open.set_exception(CommitError("the channel was lost before the commit"))
            self._open.exception()
            self._open = None
        try:
            await asyncio.wait_for(channel.tx_select(), self._timeout)
        except (TimeoutError, aiormq.exceptions.AMQPError, ConnectionError) as exc:
            raise CommitError(f"no transaction mode on the channel: {exc!r}") from exc
        self._selected = channel

    async def _commit_all(self) -> None:
        """Commit what was staged, again and again, until nothing is left."""
        while self._open is not None:
            async with self._lock:
                joined, self._open = self._open, None
                channel = self._selected
                assert joined is not None and channel is not None
                try:
                    await asyncio.wait_for(channel.tx_commit(), self._timeout)
                except BaseException as exc:
                    if isinstance(exc, asyncio.CancelledError):
                        joined.cancel()
                        raise
                    joined.set_exception(CommitError(f"transaction not committed: {exc!r}"))
                    joined.exception()  # retrieved: each waiter raises its own
                    self._selected = None
                    if isinstance(exc, TimeoutError):
                        # Whether it will still be applied is unknown: close the channel,
                        # so that it is not used again and what it holds goes back.
                        await _close(channel)
                    continue
                self.commits += 1
                joined.set_result(None)


def _channel_of(message: AbstractIncomingMessage) -> aiormq.abc.AbstractChannel:
    try:
        return message.channel
    except ChannelInvalidStateError as exc:
        raise CommitError("the channel the message came on is gone") from exc


async def _close(channel: aiormq.abc.AbstractChannel) -> None:
    try:
        await asyncio.wait_for(channel.close(), 1.0)
    except Exception:
        log.debug("closing a channel after a commit timeout failed", exc_info=True)
