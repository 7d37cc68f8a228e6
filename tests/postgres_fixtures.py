"""Fixtures for a real PostgreSQL, and the backend fixture that runs store tests on both.

``postgres_server`` (session)
    The URL of a database on a real server in which the tests may make schemas.
``database_url``
    A URL whose connections use a schema of the test's own (``search_path``), empty at
    the start and dropped at the end: the stores migrate into it like into a new
    database. Give it to ``XBROKER_DATABASE_URL`` of a worker process as it is.
``backend`` (parametrised: sqlite, postgres)
    A `Backend`: settings for the test's state on either backend, and `Backend.stores`
    to open the stores of one more "process" on it (each with its own connections and
    holder, as another worker would have). Store tests take it to run against both.

Where the server comes from, like the RabbitMQ node (``tests/conftest.py``):
``XBROKER_DATABASE_URL`` (``make test`` exports the local cluster's, or the one you
named) if it answers, else this checkout's cluster (`broker.devdb`), started if need
be. The variable is taken out of the environment for the session, so that no worker or
CLI a test starts uses it by accident: every XBROKER_* variable beats a settings file.

Tests using these fixtures get the ``postgres`` marker. Without a server they follow the
one rule for what tests need (`tests.tools`): skipped with the reason and what to
install, failed in CI; and a CI session in which any of them was skipped fails
(``tests/conftest.py`` guards the ``postgres`` marker as it does ``rabbitmq``).

``postgres_dump(url)`` is the database as ``pg_dump`` writes it (data only, the URL's
schema), for tests that look for what must not be kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import subprocess
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from broker import devdb
from broker.settings import Settings, load_settings
from broker.stores.backend import Stores
from tests import tools

__all__ = ["Backend", "admin", "postgres_dump", "private_schema", "with_search_path"]

POSTGRES_FIXTURES = frozenset({"postgres_server", "database_url"})
SESSION_DATABASE_URL = os.environ.pop("XBROKER_DATABASE_URL", None)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

T = TypeVar("T")


INSTALL = "`make test` installs it (apt-get install postgresql) and starts a local cluster"


def admin(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on a loop of its own, in a thread, from a synchronous fixture (the
    test session's loop must not be touched outside its tests)."""
    result: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(asyncio.run(coroutine))
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


async def execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({"search_path": schema})) if q)
    return urlunsplit(parts._replace(query=query))


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> str:
    """A database URL on a real server (see the module docstring)."""
    if SESSION_DATABASE_URL:
        if not devdb.postgres_reachable(SESSION_DATABASE_URL):
            tools.unavailable(
                "PostgreSQL", f"XBROKER_DATABASE_URL does not answer: {_safe(SESSION_DATABASE_URL)}"
            )
        return SESSION_DATABASE_URL
    try:
        return devdb.ensure_cluster(request.config.rootpath).url
    except devdb.DevDatabaseError as exc:
        tools.unavailable("PostgreSQL", f"{exc}; {INSTALL}")


@contextlib.contextmanager
def private_schema(server: str) -> Iterator[str]:
    """The server's database seen through a new schema, dropped at the end."""
    schema = f"test_{secrets.token_hex(6)}"
    admin(execute(server, f'CREATE SCHEMA "{schema}"'))
    try:
        yield with_search_path(server, schema)
    finally:
        # A session left inside a transaction must fail the teardown, not hang it.
        admin(execute(server, f"SET lock_timeout = '20s'; DROP SCHEMA \"{schema}\" CASCADE"))


@pytest.fixture
def database_url(postgres_server: str) -> Iterator[str]:
    """The server's database, seen through a schema of this test's own."""
    with private_schema(postgres_server) as url:
        yield url


def postgres_dump(url: str) -> bytes:
    """What ``pg_dump`` writes of the URL's schema: every row of every table (data only)."""
    parts = urlsplit(url)
    schema = parse_qs(parts.query).get("search_path", ["public"])[0]
    plain = urlunsplit(parts._replace(query=""))
    done = subprocess.run(
        [str(devdb.postgres_tool("pg_dump")), "--data-only", f"--schema={schema}", plain],
        capture_output=True,
        timeout=120,
        check=True,
    )
    return done.stdout


@dataclass
class Backend:
    """The state of one test on one backend; `stores` opens another process's view."""

    name: str
    settings: Settings
    opened: list[Stores] = field(default_factory=list)

    def stores(self, **overrides: Any) -> Stores:
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        stores = Stores(settings)
        self.opened.append(stores)
        return stores


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The test's state on SQLite files, then on PostgreSQL (see the module docstring)."""
    url = request.getfixturevalue("database_url") if request.param == "postgres" else None
    settings = load_settings(
        EXAMPLES / "xbroker.toml", state_dir=tmp_path / "state", database_url=url
    )
    chosen = Backend(request.param, settings)
    yield chosen
    for stores in chosen.opened:
        await stores.close()


def _safe(url: str) -> str:
    parts = urlsplit(url)
    return f"postgresql://{parts.hostname}:{parts.port}{parts.path}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        on_postgres = callspec is not None and callspec.params.get("backend") == "postgres"
        if POSTGRES_FIXTURES & names or on_postgres:
            item.add_marker(pytest.mark.postgres)
