"""Doctor checks against RabbitMQ: the node answers, and the topology exists.

`check_rabbitmq` opens the one connection the later checks share (the caller closes it);
`check_topology` looks for every exchange and queue the broker declares for the
directory, with passive declares on throwaway channels so nothing is created.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import AbstractConnection

from broker.amqp import topology
from broker.ops.doctor.findings import Finding, Status
from routing import AmqpEndpoint, Directory

__all__ = ["MINIMUM_RABBITMQ", "check_rabbitmq", "check_topology"]

# Quorum queues with at-least-once dead lettering and x-delivery-limit, as topology.py
# declares them, need 3.10.
MINIMUM_RABBITMQ = (3, 10)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def check_rabbitmq(
    url: str, timeout: float
) -> tuple[AbstractConnection | None, list[Finding]]:
    """Connect and judge the node's version; the connection is None when it fails."""
    where = _redacted(url)
    try:
        connection = await asyncio.wait_for(
            aio_pika.connect(
                url, client_properties={"connection_name": "xbroker-doctor"}, timeout=timeout
            ),
            timeout,
        )
    except aiormq.exceptions.ProbableAuthenticationError as exc:
        return None, [
            Finding(
                "rabbitmq",
                Status.FAIL,
                f"{where}: login refused ({exc})",
                "check user and password in amqp_url (or XBROKER_AMQP_URL); "
                "`rabbitmqctl authenticate_user USER PASSWORD` on the node tells",
            )
        ]
    except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
        return None, [
            Finding(
                "rabbitmq",
                Status.FAIL,
                f"{where} cannot be reached: {type(exc).__name__}: {exc}",
                "start RabbitMQ (`xbroker node ensure` for the local development node, "
                "`systemctl start rabbitmq-server`, or `docker compose up rabbitmq`), "
                "and check host, port and vhost in amqp_url (or XBROKER_AMQP_URL)",
            )
        ]
    properties = connection.transport.connection.server_properties if connection.transport else {}
    product = str(properties.get("product", "unknown"))
    version = str(properties.get("version", "unknown"))
    detail = f"{where}: {product} {version}"
    if _version_tuple(version) < MINIMUM_RABBITMQ:
        minimum = ".".join(map(str, MINIMUM_RABBITMQ))
        return connection, [
            Finding(
                "rabbitmq",
                Status.FAIL,
                f"{detail}; xbroker needs {minimum} or newer (quorum queues with "
                "at-least-once dead lettering)",
                f"upgrade RabbitMQ to {minimum} or newer",
            )
        ]
    return connection, [Finding("rabbitmq", Status.OK, detail)]


def _version_tuple(version: str) -> tuple[int, ...]:
    numbers: list[int] = []
    for part in version.split("."):
        digits = "".join(c for c in part if c.isdigit())
        if not digits:
            break
        numbers.append(int(digits))
    return tuple(numbers) or (0,)


def _expected(directory: Directory | None) -> tuple[list[str], list[str]]:
    exchanges = [
        topology.INGRESS_EXCHANGE,
        topology.DELIVER_EXCHANGE,
        topology.RECEIPT_EXCHANGE,
        topology.DELIVERY_RECEIPT_EXCHANGE,
        topology.DEAD_EXCHANGE,
    ]
    queues = [topology.INGRESS_QUEUE, topology.DELIVERY_RECEIPT_QUEUE, topology.REFUSAL_QUEUE]
    for agency in directory or ():
        if topology.has_inbox(agency) and isinstance(agency.endpoint, AmqpEndpoint):
            queues.append(topology.agency_queue(agency.kennung))
            if agency.endpoint.test:
                queues.append(topology.agency_queue(agency.kennung, test=True))
        if topology.has_receipt_queue(agency):
            queues.append(topology.receipt_queue(agency.kennung))
    return exchanges, queues + [f"{q}.dead" for q in queues]


async def check_topology(
    connection: AbstractConnection, directory: Directory | None, timeout: float
) -> list[Finding]:
    """Report exchanges and queues of the directory that are missing or refused."""
    exchanges, queues = _expected(directory)
    missing: list[str] = []
    refused: list[str] = []
    channel = await connection.channel(publisher_confirms=False)
    for kind, name in [("exchange", e) for e in exchanges] + [("queue", q) for q in queues]:
        try:
            if kind == "exchange":
                await asyncio.wait_for(channel.get_exchange(name, ensure=True), timeout)
            else:
                await asyncio.wait_for(channel.declare_queue(name, passive=True), timeout)
        except aiormq.exceptions.ChannelNotFoundEntity:
            missing.append(f"{kind} {name}")
        except aiormq.exceptions.ChannelAccessRefused:
            refused.append(f"{kind} {name}")
        if channel.is_closed:  # a failed passive declare closes the channel
            channel = await connection.channel(publisher_confirms=False)
    await channel.close()
    findings: list[Finding] = []
    if refused:
        findings.append(
            Finding(
                "topology",
                Status.FAIL,
                f"access refused to {', '.join(refused)}",
                "grant the broker's user configure, write and read permissions on its vhost: "
                "`rabbitmqctl set_permissions -p VHOST USER '.*' '.*' '.*'`",
            )
        )
    if missing:
        findings.append(
            Finding(
                "topology",
                Status.FAIL,
                f"missing {', '.join(missing)}",
                "start the broker once (`xbroker run`): it declares every exchange and queue "
                "of the directory at start, and again when the directory changes",
            )
        )
    if not findings:
        findings.append(
            Finding(
                "topology",
                Status.OK,
                f"{len(exchanges)} exchanges and {len(queues)} queues present",
            )
        )
    return findings
