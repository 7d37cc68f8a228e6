"""A TCP proxy in front of RabbitMQ that can hold back what the node sends.

While stalled, nothing from the node reaches the clients behind the proxy: no
deliveries, no confirms, no heartbeats; what they send still reaches the node. To a
client that is a node that stopped answering: its publish confirms never come, and
without a deadline a publisher would wait for them forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

__all__ = ["StallingProxy"]


class StallingProxy:
    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target_url = parts
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 5672
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """The target URL with the proxy's port."""
        parts = self._target_url
        netloc = parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        netloc_new = f"{netloc[0]}@{host}" if len(netloc) == 2 else host
        return urlunsplit(parts._replace(netloc=netloc_new))

    @contextlib.contextmanager
    def stalled(self) -> Iterator[None]:
        """Nothing from the node reaches the clients until the block ends."""
        self._flowing.clear()
        try:
            yield
        finally:
            self._flowing.set()

    async def __aenter__(self) -> StallingProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._flowing.set()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            node_r, node_w = await asyncio.open_connection(self._host, self._port)
        except OSError:
            client_w.close()
            return
        up = asyncio.create_task(self._pump(client_r, node_w, stallable=False))
        down = asyncio.create_task(self._pump(node_r, client_w, stallable=True))
        self._tasks |= {up, down}
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                self._tasks.discard(task)
            for writer in (client_w, node_w):
                with contextlib.suppress(Exception):
                    writer.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, stallable: bool
    ) -> None:
        while True:
            if stallable:
                await self._flowing.wait()
            data = await reader.read(65536)
            if not data:
                return
            if stallable:
                await self._flowing.wait()
            writer.write(data)
            await writer.drain()
