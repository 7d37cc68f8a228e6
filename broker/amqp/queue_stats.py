"""Queue depth and consumers, read from RabbitMQ's own Prometheus endpoint.

A passive queue.declare would be the obvious AMQP way, but for quorum queues RabbitMQ
3.10 answers it with counts of 0 (messages and consumers) whatever the truth. The
``rabbitmq_prometheus`` plugin's per-queue metrics are exact, so the broker reads those
and republishes them per agency.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from prometheus_client.parser import text_string_to_metric_families

from broker.amqp import topology
from broker.logs import event
from monitoring.metrics import Metrics
from routing import Directory

__all__ = ["QueueStats", "read_queue_stats", "sample_queues", "vhost_of"]

log = logging.getLogger("xbroker.broker")

_FAMILIES = "family=queue_coarse_metrics&family=queue_consumer_count"


@dataclass(frozen=True, slots=True)
class QueueStats:
    messages: int
    consumers: int


def vhost_of(amqp_url: str) -> str:
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def parse_queue_stats(text: str, vhost: str) -> Mapping[str, QueueStats]:
    messages: dict[str, int] = {}
    consumers: dict[str, int] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("vhost") != vhost or "queue" not in sample.labels:
                continue
            queue = sample.labels["queue"]
            if sample.name == "rabbitmq_detailed_queue_messages":
                messages[queue] = int(sample.value)
            elif sample.name == "rabbitmq_detailed_queue_consumers":
                consumers[queue] = int(sample.value)
    return {q: QueueStats(messages[q], consumers.get(q, 0)) for q in messages}


async def read_queue_stats(
    metrics_url: str, vhost: str, timeout: float = 5.0
) -> Mapping[str, QueueStats]:
    """Per-queue stats of one vhost from ``<metrics_url>/metrics/detailed``."""
    url = f"{metrics_url.rstrip('/')}/metrics/detailed?vhost={quote(vhost, safe='')}&{_FAMILIES}"

    def fetch() -> str:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body: bytes = response.read()
        return body.decode("utf-8")

    return parse_queue_stats(await asyncio.to_thread(fetch), vhost)


async def sample_queues(
    metrics_url: str,
    vhost: str,
    directory: Callable[[], Directory],
    metrics: Metrics,
    interval: float,
) -> None:
    """Forever: depth, consumers and dead letters of every agency inbox, into the gauges."""
    while True:
        try:
            stats = await read_queue_stats(metrics_url, vhost)
            for agency in directory():
                if not topology.has_inbox(agency):
                    continue
                name = topology.agency_queue(agency.kennung)
                inbox = stats.get(name, QueueStats(0, 0))
                metrics.set_queue(
                    agency.kennung,
                    messages=inbox.messages,
                    consumers=inbox.consumers,
                    dead_letters=stats.get(f"{name}.dead", QueueStats(0, 0)).messages,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # sampling must never take the worker down
            event(log, "queues.sample_failed", logging.WARNING, error=str(exc))
        await asyncio.sleep(interval)
