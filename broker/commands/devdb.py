"""``xbroker db``: the project-local PostgreSQL cluster (see ``broker.devdb``).

``xbroker db ensure --print-url`` is what the Makefile calls: it prints only the database
URL on stdout, so ``XBROKER_DATABASE_URL=$(xbroker db ensure --print-url)`` works;
everything else goes to stderr. When ``XBROKER_DATABASE_URL`` already names a server that
answers, that URL is printed and nothing is started.

``python -m broker.commands.devdb ARGS`` is the same as ``xbroker db ARGS`` without
loading the other commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from broker import devdb
from broker.commands._local_server import Actions, LocalServer

__all__ = ["main", "register"]


def _describe(info: devdb.ClusterInfo) -> None:
    print(f"server    PostgreSQL (pid {info.pid}), {info.bin_dir}")
    print(f"url       {info.url}")
    print(f"data      {info.data_dir}")
    print(f"log       {info.log_file}")


def _add_remove(actions: Actions) -> None:
    remove = actions.add_parser(
        "remove", help="stop the cluster and delete its files and data, wherever they are"
    )
    remove.set_defaults(func=_remove)


def _remove(args: argparse.Namespace) -> int:
    try:
        removed = devdb.remove_cluster()
    except (devdb.DevDatabaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"removed {removed}" if removed else "no local PostgreSQL cluster", file=sys.stderr)
    return 0


_CLUSTER = LocalServer[devdb.ClusterInfo](
    command="db",
    module="broker.commands.devdb",
    server="PostgreSQL cluster",
    url_variable="XBROKER_DATABASE_URL",
    url_name="URL",
    answering="a PostgreSQL server",
    error=devdb.DevDatabaseError,
    reachable=devdb.postgres_reachable,
    ensure=devdb.ensure_cluster,
    stop=devdb.stop_cluster,
    status=devdb.cluster_status,
    url=lambda info: info.url,
    ready=lambda info: f"PostgreSQL ready on port {info.port} (log: {info.log_file})",
    describe=_describe,
    more=_add_remove,
)


def register(subparsers: Actions) -> None:
    """Add ``xbroker db {ensure,stop,status,remove,probe}``."""
    _CLUSTER.register(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``db ACTION ...`` on its own: ``python -m broker.commands.devdb ensure``."""
    return _CLUSTER.main(argv)


if __name__ == "__main__":
    sys.exit(main())
