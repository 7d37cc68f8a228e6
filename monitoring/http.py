"""The operator's HTTP endpoint: ``/metrics``, ``/livez`` and ``/readyz``.

It runs inside the broker's own asyncio loop rather than in a thread of its own, so a
readiness check reads the broker's state without locks, and a loop that is stuck shows
as a scrape that times out. uvicorn serves it; uvicorn's signal handling is switched off
because the broker owns SIGTERM and its shutdown order.

``/livez`` answers 200 whenever the loop runs. ``/readyz`` answers 200 only when every
readiness check is true, else 503; both bodies list the checks, so an operator sees which
one fails, and ``reasons`` says why, in words, where the process knows (a fault that
holds it: "status.sqlite3: disk I/O error").
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass

import uvicorn
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

__all__ = ["EmbeddedServer", "Readiness", "Reasons", "ServerHandle", "build_app", "serve"]

Readiness = Callable[[], Mapping[str, bool]]
"""Returns each readiness check by name (e.g. ``{"amqp": True, "standards": True}``)."""

Reasons = Callable[[], Mapping[str, str]]
"""Returns why the process is not ready, in words, by concern (empty when it is)."""

_STARTUP_TIMEOUT = 10.0
_STARTUP_POLL = 0.01


def build_app(
    registry: CollectorRegistry, readiness: Readiness, reasons: Reasons | None = None
) -> Starlette:
    """The ASGI app serving ``registry`` and the health of the process."""

    async def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    async def livez(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        try:
            checks = {name: bool(passed) for name, passed in readiness().items()}
        except Exception as exc:  # a failing check must read as "not ready", not as a 500
            return JSONResponse(
                {"ready": False, "checks": {}, "error": f"{type(exc).__name__}: {exc}"},
                status_code=503,
            )
        ready = all(checks.values())
        body: dict[str, object] = {"ready": ready, "checks": checks}
        if reasons is not None and (why := dict(reasons())):
            body["reasons"] = why
        return JSONResponse(body, status_code=200 if ready else 503)

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/livez", livez, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ]
    )


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers to the broker."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass(slots=True)
class ServerHandle:
    """A running endpoint: where it listens, and how to stop it."""

    host: str
    port: int
    _server: EmbeddedServer
    _task: asyncio.Task[None]

    @property
    def url(self) -> str:
        """Base URL of the endpoint, e.g. ``http://127.0.0.1:9464``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        """Stop accepting connections, finish open responses, and wait for the server."""
        self._server.should_exit = True
        await self._task


async def serve(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
    """Start serving ``app`` as a task in the running loop; return once it accepts.

    The socket is bound here, before uvicorn starts, so that ``port=0`` yields the port
    the kernel chose and a port in use raises `OSError` to the caller instead of uvicorn
    exiting the process.
    """
    sock = socket.create_server((host, port), family=_family(host), reuse_port=False)
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name=f"http:{bound_port}")
    waited = 0.0
    while not server.started:
        if task.done():
            sock.close()
            task.result()  # raises what made the server fail
            raise RuntimeError("the HTTP endpoint stopped before it started")
        if waited >= _STARTUP_TIMEOUT:
            server.should_exit = True
            await task
            raise TimeoutError(f"the HTTP endpoint did not start within {_STARTUP_TIMEOUT} s")
        await asyncio.sleep(_STARTUP_POLL)
        waited += _STARTUP_POLL
    return ServerHandle(host=bound_host, port=bound_port, _server=server, _task=task)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
