"""The HTTP API's connections: time limits for a request's headers and body, caps on how
many are open. Served by uvicorn as ``serve_api`` serves the API, with a small app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from broker.http_api import ApiServer, ConnectionLimits, serve_api
from tests.polling import eventually

LIMITS = ConnectionLimits(header_timeout=0.5, body_timeout=0.5, max_connections=6, max_per_client=3)
# Far more than any limit above: a connection still open this long was never closed.
DEADLINE = 15.0
REQUEST = b"POST /echo HTTP/1.1\r\nHost: api\r\nContent-Length: 5\r\n\r\nhello"


async def _echo(request: Request) -> Response:
    return PlainTextResponse(await request.body())


@pytest.fixture
async def server() -> AsyncIterator[ApiServer]:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"])])
    running = await serve_api(app, limits=LIMITS)
    yield running
    await running.stop()


async def _connect(server: ApiServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(server.host, server.port)


async def _closed_after(reader: asyncio.StreamReader, started: float) -> float:
    """Seconds from ``started`` until the server closed the connection (EOF)."""
    async with asyncio.timeout(DEADLINE):
        while await reader.read(65536):
            pass
    return time.monotonic() - started


async def _answered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(REQUEST)
    await writer.drain()
    async with asyncio.timeout(DEADLINE):
        head = await reader.readuntil(b"\r\n\r\n")
        return head + await reader.readexactly(5)


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every: float = 0.1) -> None:
    for byte in data:
        if writer.is_closing():
            return
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every)


async def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(
    server: ApiServer,
) -> None:
    started = time.monotonic()
    reader, writer = await _connect(server)

    seconds = await _closed_after(reader, started)

    writer.close()
    assert seconds >= LIMITS.header_timeout


async def test_headers_trickling_in_are_cut_off_at_the_header_timeout(server: ApiServer) -> None:
    started = time.monotonic()
    reader, writer = await _connect(server)
    endless = b"POST /echo HTTP/1.1\r\nHost: api\r\n" + b"X-Slow: 1\r\n" * 100
    trickle = asyncio.create_task(_trickle(writer, endless))

    seconds = await _closed_after(reader, started)

    trickle.cancel()
    writer.close()
    # Each byte came well within the timeout: only a limit on the whole headers closes it.
    assert seconds >= LIMITS.header_timeout


async def test_a_body_trickling_in_is_cut_off_at_the_body_timeout(
    server: ApiServer, caplog: pytest.LogCaptureFixture
) -> None:
    reader, writer = await _connect(server)
    writer.write(b"POST /echo HTTP/1.1\r\nHost: api\r\nContent-Length: 1000\r\n\r\n")
    started = time.monotonic()
    trickle = asyncio.create_task(_trickle(writer, b"x" * 1000))

    with caplog.at_level(logging.INFO):
        seconds = await _closed_after(reader, started)

    trickle.cancel()
    writer.close()
    assert seconds >= LIMITS.body_timeout
    assert "http.request_timeout" in caplog.text


async def test_a_kept_alive_connection_serves_one_request_after_another(
    server: ApiServer,
) -> None:
    reader, writer = await _connect(server)

    first = await _answered(reader, writer)
    second = await _answered(reader, writer)

    writer.close()
    assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"hello")
    assert second.startswith(b"HTTP/1.1 200") and second.endswith(b"hello")


async def test_connections_past_the_cap_per_client_are_closed_at_once(server: ApiServer) -> None:
    held = [await _connect(server) for _ in range(LIMITS.max_per_client)]
    reader, writer = await _connect(server)

    seconds = await _closed_after(reader, time.monotonic())
    answer = await _answered(*held[0])

    writer.close()
    for _, w in held:
        w.close()
    assert seconds < LIMITS.header_timeout
    assert answer.endswith(b"hello")


async def test_a_closed_connection_makes_room_for_the_next(server: ApiServer) -> None:
    held = [await _connect(server) for _ in range(LIMITS.max_per_client)]
    _, first = held.pop(0)
    first.close()
    await first.wait_closed()

    async def answer_on_a_new_connection() -> bytes:
        reader, writer = await _connect(server)
        try:
            return await _answered(reader, writer)
        finally:
            writer.close()

    answer = await eventually(
        answer_on_a_new_connection,
        what="a new connection answered",
        ignoring=(asyncio.IncompleteReadError,),  # the server had not seen the close yet
        timeout=DEADLINE,
    )

    for _, w in held:
        w.close()
    assert answer.endswith(b"hello")


async def test_connections_past_the_total_cap_are_closed_at_once() -> None:
    app = Starlette(routes=[Route("/echo", _echo, methods=["POST"])])
    limits = ConnectionLimits(header_timeout=5, body_timeout=5, max_connections=2)
    running = await serve_api(app, limits=limits)
    try:
        held = [await _connect(running) for _ in range(2)]
        reader, writer = await _connect(running)
        seconds = await _closed_after(reader, time.monotonic())
        writer.close()
        for _, w in held:
            w.close()
    finally:
        await running.stop()
    assert seconds < limits.header_timeout
