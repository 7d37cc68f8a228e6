"""Which stores a broker process writes to: SQLite files, or one shared PostgreSQL.

One setting chooses: ``database_url`` (``XBROKER_DATABASE_URL=postgresql://...``) puts
the deduplication claims and the status store (and so the Laufzettel that ``xbroker
status`` and the HTTP API show) into that database, shared by every host; without it
they are SQLite files under the state dir, shared by the workers of one host, the
embedded default for one host and for ``make run``. The audit trail stays a file per
host either way (docs/audit.md). The XTA endpoint's store stays SQLite (docs/scaling.md
says why).

A process opens its stores once through `Stores`: with PostgreSQL they share one pool
(`broker.stores.postgres.Database`), opened on first use.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from broker.errors import ConfigurationError
from broker.settings import Settings
from broker.stores.dedup import DedupStore
from broker.stores.postgres import Database, PostgresDedupStore, PostgresStatusStore
from broker.stores.sqlite import SqliteDedupStore, SqliteStatusStore
from broker.stores.status import StatusStore

__all__ = ["Backend", "Stores", "backend_of"]


class Backend(StrEnum):
    SQLITE = "sqlite"
    POSTGRES = "postgresql"


def backend_of(settings: Settings) -> Backend:
    url = settings.database_url
    if not url:
        return Backend.SQLITE
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"database_url must be a postgresql:// URL, not {urlsplit(url).scheme or url!r}"
        )
    return Backend.POSTGRES


class Stores:
    """The state stores of one process, on the backend the settings choose."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.backend = backend_of(settings)
        self.database: Database | None = None
        if self.backend is Backend.POSTGRES:
            assert settings.database_url is not None
            self.database = Database(
                settings.database_url,
                pool_size=settings.database_pool_size,
                statement_timeout=settings.database_statement_timeout_seconds,
                connect_timeout=settings.database_connect_timeout_seconds,
                synchronous_commit=settings.database_synchronous_commit,
                application_name=f"xbroker {settings.broker_name}",
            )
        self._status: StatusStore | None = None

    def where(self) -> str:
        """Where the state is, for logs and messages (without a password)."""
        if self.database is None:
            return str(self.settings.state_dir)
        # netloc, not hostname/port: a URL may list several servers (``h1:p1,h2:p2``).
        parts = urlsplit(self.database.url)
        servers = parts.netloc.rpartition("@")[2]
        return f"postgresql://{servers}{parts.path}"

    def status(self) -> StatusStore:
        """The status store (one per process)."""
        if self._status is None:
            if self.database is not None:
                self._status = PostgresStatusStore(self.database)
            else:
                self._status = SqliteStatusStore(self.settings.status_path)
        return self._status

    def dedup(self, path: Path | None = None) -> DedupStore:
        """A deduplication store; ``path`` names another SQLite file (ignored otherwise)."""
        window = self.settings.dedup_window_days * 86400
        if self.database is not None:
            return PostgresDedupStore(self.database, window)
        return SqliteDedupStore(path or self.settings.state_dir / "dedup.sqlite3", window)

    async def close(self) -> None:
        if self._status is not None:
            await self._status.close()
            self._status = None
        if self.database is not None:
            await self.database.close()
