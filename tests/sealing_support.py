"""Test helpers for sealed delivery: a tap on an agency's copies, an agency with a key
ring of the test's choosing, and what waits in a queue."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aio_pika
from aio_pika.abc import AbstractIncomingMessage
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from broker.amqp import topology
from broker.app import party_signer
from broker.sdk.agency import AgencyClient, Delivery
from sealing import KeyRing
from tests.polling import eventually
from tests.world import World

__all__ = [
    "Copy",
    "CopyTap",
    "Hook",
    "agency",
    "copy_tap",
    "drain",
    "stranger_keys",
]


@dataclass(frozen=True, slots=True)
class Copy:
    uuid: str
    body: bytes
    content_type: str | None
    headers: dict[str, object]


@dataclass
class CopyTap:
    """Every copy the broker publishes for one agency, as published (beside its inbox)."""

    copies: list[Copy] = field(default_factory=list)

    async def of(self, uuid: str) -> Copy:
        def found() -> Copy | None:
            return next((copy for copy in self.copies if copy.uuid == uuid), None)

        copy = await eventually(found, what=f"the copy of {uuid} published")
        assert copy is not None
        return copy


@asynccontextmanager
async def copy_tap(amqp_url: str, kennung: str) -> AsyncIterator[CopyTap]:
    tap = CopyTap()
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True, auto_delete=True)
    await queue.bind(topology.DELIVER_EXCHANGE, routing_key=topology.agency_routing_key(kennung))

    async def keep(message: AbstractIncomingMessage) -> None:
        tap.copies.append(
            Copy(
                message.message_id or "",
                message.body,
                message.content_type,
                dict(message.headers or {}),
            )
        )
        await message.ack()

    await queue.consume(keep)
    try:
        yield tap
    finally:
        await connection.close()


@dataclass
class RunningAgency:
    client: AgencyClient
    received: list[Delivery] = field(default_factory=list)


@asynccontextmanager
async def agency(world: World, kennung: str, keys: KeyRing) -> AsyncIterator[RunningAgency]:
    """An agency client of ``kennung`` that opens sealed copies with ``keys`` only."""
    received: list[Delivery] = []

    async def record(delivery: Delivery) -> None:
        received.append(delivery)

    client = AgencyClient(
        world.settings.amqp_url,
        kennung,
        party_signer(world.settings, kennung),
        world.parts.verifier(),
        record,
        keys=keys,
    )
    await client.start()
    try:
        yield RunningAgency(client, received)
    finally:
        await client.close()


async def drain(amqp_url: str, queue_name: str) -> list[AbstractIncomingMessage]:
    """Everything waiting in ``queue_name``, taken off it (acked)."""
    connection = await aio_pika.connect(amqp_url)
    taken = []
    try:
        channel = await connection.channel()
        queue = await channel.get_queue(queue_name, ensure=False)
        while (message := await queue.get(fail=False, no_ack=True)) is not None:
            taken.append(message)
    finally:
        await connection.close()
    return taken


def stranger_keys() -> KeyRing:
    """A key ring with one key nobody sealed for: what an agency with the wrong key holds."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return KeyRing.from_pem([pem])


Answer = Callable[[bytes, dict[str, str]], tuple[int, dict[str, str]]]


@dataclass
class Hook:
    """A plain-HTTP webhook endpoint on loopback: keeps every body it is sent and answers
    as ``answer`` says (status and headers), by default 503 (down)."""

    answer: Answer = lambda body, headers: (503, {})
    bodies: list[bytes] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")[1:]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines if x)
        }
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.bodies.append(body)
        status, extra = self.answer(body, headers)
        more = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n{more}\r\n".encode())
        await writer.drain()
        writer.close()
