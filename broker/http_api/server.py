"""Serving the HTTP API inside the broker's loop, over HTTP or TLS with client certificates.

Like the metrics endpoint (`monitoring.http`), uvicorn runs as a task of the running
loop with its signal handling off: the broker owns SIGTERM and its shutdown order.

With TLS, uvicorn verifies the client certificate against the configured CA
(``ssl_cert_reqs``), but does not pass it to the app. `_ClientCertProtocol` does: it
reads the peer certificate when the connection is made and adds it to every request's
scope as the ASGI TLS extension, where `broker.http_api.auth` finds it.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from monitoring.http import EmbeddedServer

__all__ = ["ApiServer", "ApiTlsFiles", "serve_api"]

_STARTUP_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class ApiTlsFiles:
    certificate: Path
    key: Path
    client_ca: Path | None = None  # set: clients may present certificates issued by it


class _WithClientCert:
    """Adds the connection's client certificate to each request's scope."""

    def __init__(self, app: ASGIApp, pem: str) -> None:
        self._app = app
        self._pem = pem

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            extensions = dict(scope.get("extensions") or {})
            extensions["tls"] = {"client_cert_chain": [self._pem], "client_cert_error": None}
            scope = {**scope, "extensions": extensions}
        await self._app(scope, receive, send)


class _ClientCertProtocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.app = _WithClientCert(self.app, ssl.DER_cert_to_PEM_cert(der))


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
    app: ASGIApp, host: str = "127.0.0.1", port: int = 0, tls: ApiTlsFiles | None = None
) -> ApiServer:
    """Start serving ``app``; return once it accepts connections (``port=0``: any free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family)
    bound_host, bound_port = sock.getsockname()[:2]
    options: dict[str, Any] = {}
    if tls is not None:
        options = {
            "ssl_certfile": str(tls.certificate),
            "ssl_keyfile": str(tls.key),
            "http": _ClientCertProtocol,
        }
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
