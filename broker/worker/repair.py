"""Declaring a missing queue again, when a publish finds it gone.

A queue the directory calls for can vanish under a running broker: deleted by hand, or
lost with a vhost restored from an old definition. RabbitMQ then returns every publish
to it as unroutable. That is a fault of the topology, not of the message: the worker
declares the queue again, as at start, and publishes the one copy (or receipt) again.
A queue the directory does not call for is not declared; the publish stays a fault.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aio_pika.abc import AbstractChannel

from broker.amqp import topology
from broker.errors import UnroutableError
from broker.logs import event
from monitoring.faults import FaultMetrics
from routing import Directory

__all__ = ["Repair"]

log = logging.getLogger("xbroker.broker")


class Repair:
    def __init__(
        self, directory: Callable[[], Directory], metrics: FaultMetrics, delivery_limit: int
    ) -> None:
        self._directory = directory
        self._metrics = metrics
        self._delivery_limit = delivery_limit
        self._channel: AbstractChannel | None = None
        self._exchanges: topology.Exchanges | None = None

    def bind(self, channel: AbstractChannel, exchanges: topology.Exchanges) -> None:
        """Where to declare, once the topology is declared at start."""
        self._channel = channel
        self._exchanges = exchanges

    async def inbox(self, kennung: str) -> None:
        """Declare the inbox (and test inbox) of ``kennung`` again."""
        agency = self._directory().get(kennung)
        if agency is None or not topology.has_inbox(agency):
            raise UnroutableError(f"{kennung} has no inbox in the directory")
        channel, exchanges = self._bound()
        await topology.declare_agency_queues(
            channel,
            exchanges,
            kennung,
            test=agency.endpoint.test,
            delivery_limit=self._delivery_limit,
        )
        self._repaired(topology.agency_queue(kennung))

    async def receipt_queue(self, kennung: str) -> None:
        """Declare the receipt queue of ``kennung`` again."""
        agency = self._directory().get(kennung)
        if agency is None or not topology.has_receipt_queue(agency):
            raise UnroutableError(f"{kennung} has no receipt queue in the directory")
        channel, exchanges = self._bound()
        await topology.declare_receipt_queue(channel, exchanges, kennung, self._delivery_limit)
        self._repaired(topology.receipt_queue(kennung))

    def _bound(self) -> tuple[AbstractChannel, topology.Exchanges]:
        if self._channel is None or self._exchanges is None:
            raise UnroutableError("the topology is not declared yet")
        return self._channel, self._exchanges

    def _repaired(self, queue: str) -> None:
        self._metrics.topology_repairs.inc()
        event(log, "topology.repaired", logging.WARNING, queue=queue)
