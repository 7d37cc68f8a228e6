"""Errors of the project-local PostgreSQL cluster (the tree is drawn in the package docstring)."""

from __future__ import annotations

from broker.errors import XBrokerError

__all__ = [
    "INSTALL_HINT",
    "ClusterStartError",
    "DevDatabaseError",
    "PostgresNotInstalledError",
]

INSTALL_HINT = (
    "PostgreSQL is not installed: run `make system-deps` as root, or "
    "`sudo apt-get install postgresql`; or start one with `docker compose up -d postgres` "
    "(docker-compose.yml) and set XBROKER_DATABASE_URL to it."
)


class DevDatabaseError(XBrokerError):
    """The project-local PostgreSQL cluster cannot be had."""


class PostgresNotInstalledError(DevDatabaseError, FileNotFoundError):
    """initdb, pg_ctl and postgres are not where we look for them."""


class ClusterStartError(DevDatabaseError, TimeoutError):
    """The cluster could not be created, died, or did not answer in time; names its log."""
