"""Serving the HTTP API inside the broker's loop, over HTTP or TLS with client certificates.

Like the metrics endpoint (`monitoring.http`), uvicorn runs as a task of the running
loop with its signal handling off: the broker owns SIGTERM and its shutdown order.

Connections are served by `broker.http_api.guard.GuardedProtocol`: time limits for a
request's headers and body, caps on open connections. With TLS, uvicorn verifies the
client certificate against the configured CA (``ssl_cert_reqs``), but does not pass it
to the app; the protocol adds it to every request's scope as the ASGI TLS extension,
where `broker.http_api.auth` finds it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from broker.http_api.guard import ConnectionLimits, guarded_protocol
from monitoring.http import EmbeddedServer

__all__ = ["ApiServer", "ApiTlsFiles", "serve_api"]

_STARTUP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ApiTlsFiles:
    certificate: Path
    key: Path
    client_ca: Path | None = None  # set: clients may present certificates issued by it


@dataclass(slots=True)
class ApiServer:
    host: str
    port: int
    tls: bool
    _server: EmbeddedServer
    _task: asyncio.Task[None]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def stop(self) -> None:
        self._server.should_exit = True
        await self._task


async def serve_api(
    app: ASGIApp,
    host: str = "127.0.0.1",
    port: int = 0,
    tls: ApiTlsFiles | None = None,
    limits: ConnectionLimits = ConnectionLimits(),  # noqa: B008 (frozen, immutable)
) -> ApiServer:
    """Start serving ``app``; return once it accepts connections (``port=0``: any free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    bound_host, bound_port = sock.getsockname()[:2]
    options: dict[str, Any] = {"http": guarded_protocol(limits)}
    if tls is not None:
        options |= {"ssl_certfile": str(tls.certificate), "ssl_keyfile": str(tls.key)}
        if tls.client_ca is not None:
            # Optional, not required: callers without a certificate may use a token.
            options |= {"ssl_ca_certs": str(tls.client_ca), "ssl_cert_reqs": ssl.CERT_OPTIONAL}
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", **options)
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"api:{bound_port}")
    async with asyncio.timeout(_STARTUP_TIMEOUT):
        while not server.started:
            if task.done():
                sock.close()
                task.result()
                raise RuntimeError("the HTTP API stopped before it started")
            await asyncio.sleep(0.01)
    return ApiServer(bound_host, bound_port, tls is not None, server, task)
