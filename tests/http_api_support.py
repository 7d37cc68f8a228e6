"""The HTTP API served beside the example world, for the tests of the API."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from fastapi import FastAPI

from broker.http_api import (
    ApiLimits,
    ApiServer,
    Authenticator,
    IngressPublisher,
    TokenTable,
    build_api,
    hash_token,
    serve_api,
)
from broker.stores.backend import Stores
from tests.world import World, running_world

LIMIT = 64 * 1024
TOKENS = {
    "osi:hh-portal": secrets.token_urlsafe(16),
    "psw:02000000": secrets.token_urlsafe(16),
    "gew:02000000": secrets.token_urlsafe(16),
}


def as_caller(kennung: str) -> dict[str, str]:
    """The headers of a submission by ``kennung``."""
    return {"authorization": f"Bearer {TOKENS[kennung]}", "content-type": "application/xml"}


@dataclass
class Api:
    world: World
    server: ApiServer
    client: httpx.AsyncClient


def authenticator(world: World) -> Authenticator:
    table = TokenTable({hash_token(token): kennung for kennung, token in TOKENS.items()})
    return Authenticator(table, world.parts.directory.certificate_registered)


@asynccontextmanager
async def api_app(
    world: World,
    amqp_url: str,
    authenticate: Authenticator | None = None,
    limits: ApiLimits | None = None,
    depth_queue: str | None = None,
) -> AsyncIterator[FastAPI]:
    """The API's app for ``world``, publishing to its ingress (or reading the depth of
    ``depth_queue``), on the world's stores; by default with the tokens above and a body
    limit of ``LIMIT``."""
    options = {} if depth_queue is None else {"depth_queue": depth_queue}
    ingress = IngressPublisher(amqp_url, confirm_timeout=5.0, **options)
    await ingress.start()
    stores = Stores(world.settings)  # the world's: SQLite files, or its database
    try:
        yield build_api(
            status=stores.status(),
            ingress=ingress,
            catalog=world.parts.catalog,
            authenticate=authenticate or authenticator(world),
            limits=limits or ApiLimits(max_body_bytes=LIMIT, queue_limit=1000),
        )
    finally:
        await ingress.close()
        await stores.close()


@asynccontextmanager
async def serving_api(amqp_url: str, state_dir: Path) -> AsyncIterator[Api]:
    """The example world running, and the API in front of it with a client."""
    async with running_world(amqp_url, state_dir) as world, api_app(world, amqp_url) as app:
        server = await serve_api(app)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                yield Api(world, server, client)
        finally:
            await server.stop()
