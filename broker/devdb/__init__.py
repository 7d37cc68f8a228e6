"""A project-local PostgreSQL cluster for development and tests, beside the RabbitMQ node.

Everything the cluster owns lives under ``<checkout>/.xbroker/postgres/``: its data
directory (``data/``, made by ``initdb``), its log, the folder of its Unix socket and
``cluster.json``, which remembers its port and the password of its one role,
``xbroker``. When the server runs as ``postgres`` (see below) and a folder above the
checkout is closed to that user, all of it lives in ``/var/tmp/xbroker-postgres-<hash of
the checkout's path>/`` instead (``xbroker db status`` names it; ``xbroker db remove``,
which ``make clean`` runs, deletes it wherever it is).
The port is chosen free at first start, on 127.0.0.1 only, and kept across
restarts while it stays free. A database ``xbroker`` is made at first start; tests make
their own databases next to it.

The server binaries are Debian's (``/usr/lib/postgresql/<version>/bin``, the newest
installed), or those in ``XBROKER_POSTGRES_BIN``. PostgreSQL refuses to run as root
("initdb: cannot be run as root"): a root caller runs ``initdb``, ``pg_ctl`` and the
server as the ``postgres`` OS user that Debian's package creates, and the data directory
belongs to that user. A system cluster (``/var/lib/postgresql``, ``pg_ctlcluster``) is
never touched.

Error tree::

    XBrokerError
    └── DevDatabaseError               the local cluster cannot be had
        ├── PostgresNotInstalledError  (also FileNotFoundError) the server is missing
        └── ClusterStartError          (also TimeoutError) initdb failed, or the server
                                       died or did not answer in time
"""

from __future__ import annotations

from broker.devdb.cluster import (
    ClusterInfo,
    cluster_status,
    ensure_cluster,
    postgres_reachable,
    postgres_tool,
    remove_cluster,
    stop_cluster,
)
from broker.devdb.errors import ClusterStartError, DevDatabaseError, PostgresNotInstalledError

__all__ = [
    "ClusterInfo",
    "ClusterStartError",
    "DevDatabaseError",
    "PostgresNotInstalledError",
    "cluster_status",
    "ensure_cluster",
    "postgres_reachable",
    "postgres_tool",
    "remove_cluster",
    "stop_cluster",
]
