"""The submitting side of ``bench.http``, in a process of its own:

    python -m bench.http_client SPEC.json RESULT.json

``SPEC`` names the mode, the bodies file (each body as a 4-byte big-endian length and
its bytes) and the mode's parameters; the result is written as JSON. Modes:

* ``http-max``: ``connections`` keep-alive connections, spread over ``urls``, each
  posting the next body as soon as its last was answered, until every body is sent.
  Rate: answers from the first to the last, after every connection is open.
* ``http-paced``: ``connections`` connections opened first (each a keep-alive client),
  then ``rate`` requests per second for ``seconds`` on a fixed schedule (open loop),
  each on a connection chosen in turn. Latency is from the scheduled moment to the
  answer, so a request that waits for its connection counts its wait. A connection the
  server closed (uvicorn closes one idle for 5 s) is opened again and counted.
* ``amqp``: the same bodies published to the ingress exchange with publisher confirms,
  ``connections`` unconfirmed at a time: what a portal using the SDK does.

A raw HTTP/1.1 client on asyncio streams: ten thousand connections of a full HTTP
library would measure the library; these send one request and read one answer.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

__all__ = ["main", "read_bodies", "write_bodies"]

_LENGTH = struct.Struct(">I")
_ANSWER_SECONDS = 60.0


def write_bodies(path: Path, bodies: Sequence[bytes]) -> None:
    path.write_bytes(b"".join(_LENGTH.pack(len(b)) + b for b in bodies))


def read_bodies(path: Path) -> list[bytes]:
    data, out, position = path.read_bytes(), [], 0
    while position < len(data):
        (size,) = _LENGTH.unpack_from(data, position)
        position += _LENGTH.size
        out.append(data[position : position + size])
        position += size
    return out


class _Connection:
    """One keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/xml\r\n"
        ).encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.turn = asyncio.Lock()
        self.reconnects = 0

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self._host, self._port)

    async def post(self, body: bytes) -> int:
        """The answer's status; opens the connection again once if the server closed it."""
        for attempt in (0, 1):
            if self._writer is None or self._writer.is_closing():
                self.reconnects += attempt or int(self._writer is not None)
                await self.open()
            try:
                return await self._exchange(body)
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, body: bytes) -> int:
        assert self._reader is not None and self._writer is not None
        self._writer.write(self._head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await self._writer.drain()
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                await self._reader.readexactly(length)
                self.close()
                return status
        await self._reader.readexactly(length)
        return status

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = None


async def _open_all(urls: Sequence[str], token: str, count: int) -> list[_Connection]:
    connections = [_Connection(urls[i % len(urls)], token) for i in range(count)]
    window = asyncio.Semaphore(256)  # connects in flight: the accept backlog is finite

    async def one(connection: _Connection) -> None:
        async with window:
            await connection.open()

    await asyncio.gather(*(one(c) for c in connections))
    return connections


async def _http_max(spec: dict[str, Any], bodies: list[bytes]) -> dict[str, Any]:
    connections = await _open_all(spec["urls"], spec["token"], spec["connections"])
    statuses: Counter[int] = Counter()
    queue = iter(bodies)
    started = time.perf_counter()

    async def worker(connection: _Connection) -> None:
        for body in queue:
            statuses[await connection.post(body)] += 1

    await asyncio.gather(*(worker(c) for c in connections))
    seconds = time.perf_counter() - started
    for connection in connections:
        connection.close()
    return {"statuses": dict(statuses), "seconds": seconds, "per_s": statuses[202] / seconds}


async def _http_paced(spec: dict[str, Any], bodies: list[bytes]) -> dict[str, Any]:
    opening = time.perf_counter()
    connections = await _open_all(spec["urls"], spec["token"], spec["connections"])
    opened_s = time.perf_counter() - opening
    rate, count = float(spec["rate"]), min(len(bodies), int(spec["rate"] * spec["seconds"]))
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    start = time.perf_counter() + 0.2

    async def one(index: int) -> None:
        connection = connections[(index * 7919) % len(connections)]  # spread, not in turn
        due = start + index / rate
        async with connection.turn:
            try:
                status = await asyncio.wait_for(connection.post(bodies[index]), _ANSWER_SECONDS)
            except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
                statuses[type(exc).__name__] += 1
                return
        statuses[str(status)] += 1
        latencies.append((time.perf_counter() - due) * 1000)

    tasks = []
    for index in range(count):
        delay = start + index / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index)))
    achieved = count / max(1e-9, time.perf_counter() - start)
    await asyncio.gather(*tasks)
    for connection in connections:
        connection.close()
    return {
        "connections": len(connections),
        "open_seconds": opened_s,
        "reconnects": sum(c.reconnects for c in connections),
        "offered_per_s": rate,
        "achieved_per_s": achieved,
        "statuses": dict(statuses),
        "latencies_ms": latencies,
    }


async def _amqp(spec: dict[str, Any], bodies: list[bytes]) -> dict[str, Any]:
    from bench.throughput import uuid_of
    from broker.amqp import publishing, topology

    connection, channel = await publishing.connect(spec["amqp_url"], "bench-http-client")
    async with connection:
        exchange = await channel.get_exchange(topology.INGRESS_EXCHANGE, ensure=False)
        window = asyncio.Semaphore(spec["connections"])
        started = time.perf_counter()

        async def one(body: bytes) -> None:
            async with window:
                await publishing.publish_confirmed(
                    exchange,
                    publishing.message(body, message_id=uuid_of(body), reply_to=spec["author"]),
                    topology.INGRESS_ROUTING_KEY,
                    _ANSWER_SECONDS,
                )

        await asyncio.gather(*(one(b) for b in bodies))
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "per_s": len(bodies) / seconds}


_MODES = {"http-max": _http_max, "http-paced": _http_paced, "amqp": _amqp}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m bench.http_client SPEC.json RESULT.json", file=sys.stderr)
        return 2
    spec = json.loads(Path(args[0]).read_text())
    bodies = read_bodies(Path(spec["bodies"]))
    result = asyncio.run(_MODES[spec["mode"]](spec, bodies))
    Path(args[1]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
