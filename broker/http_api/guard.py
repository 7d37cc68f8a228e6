"""How long a request may take to arrive, and how many connections are held at once.

uvicorn closes a connection that idles between requests, but not one that sends its
request slowly: 200 clients trickling a body and 50 trickling headers, a byte at a time,
were held for as long as they kept it up, and 1,100 connections that never sent a byte
were held too. ``GuardedProtocol`` is uvicorn's HTTP/1.1 protocol on httptools (the
parser in C; h11's in Python cost the API more per request: docs/performance.md) with
the limits of ``ConnectionLimits``:

* the headers of a request must be complete within ``header_timeout`` of the connection
  being made (or of the previous response, on a kept-alive connection);
* its body within ``body_timeout`` of its headers;
* at most ``max_connections`` are open, and ``max_per_client`` from one address; a
  connection past either is closed as soon as it is made.

A connection that runs out of time is closed; a request whose body was cut short reaches
the app as a client disconnect (``broker.http_api.app`` answers nothing and logs it). The
protocol also hands a TLS client certificate to the app, as the ASGI TLS extension,
which uvicorn does not.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from broker.logs import event

__all__ = ["ConnectionLimits", "GuardedProtocol", "guarded_protocol"]

log = logging.getLogger("xbroker.http")


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 1024
    max_per_client: int = 64


@dataclass(slots=True)
class _Open:
    """The connections open now, in all and by client address."""

    total: int = 0
    by_client: Counter[str] = field(default_factory=Counter)


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


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol on httptools with time and connection limits (see the
    module)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()
    open: ClassVar[_Open] = _Open()

    _timer: asyncio.TimerHandle | None = None
    _admitted: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else "unknown"
        if (
            self.open.total >= self.limits.max_connections
            or self.open.by_client[address] >= self.limits.max_per_client
        ):
            event(log, "http.connection_refused", logging.WARNING, client=address)
            transport.abort()
            return
        self.open.total += 1
        self.open.by_client[address] += 1
        self._admitted = address
        ssl_object = transport.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.app = _WithClientCert(self.app, ssl.DER_cert_to_PEM_cert(der))
        self._arm(self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._admitted is not None:
            self.open.total -= 1
            self.open.by_client[self._admitted] -= 1
            if not self.open.by_client[self._admitted]:
                del self.open.by_client[self._admitted]
            self._admitted = None
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.limits.body_timeout)  # now the body has its own time

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm(self.limits.header_timeout)  # for the next request's headers

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        event(log, "http.request_timeout", logging.INFO, client=self._admitted)
        self.transport.close()


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """A protocol class for one server: its limits, and counts of its own connections."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits, "open": _Open()})
