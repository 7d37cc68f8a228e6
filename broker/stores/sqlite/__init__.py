"""The stores in SQLite files under the state dir: one host, the embedded default.

Modules::

    files   opening a file the host's workers share (WAL); who holds a claim
    guard   every use checked and its faults made `StoreError`s (why: SIGBUS in WAL)
    dedup   the deduplication claim (`broker.stores.dedup`)
    status  the status store, the Laufzettel (`broker.stores.status`)
"""

from __future__ import annotations

from broker.stores.sqlite.dedup import SqliteDedupStore
from broker.stores.sqlite.status import SqliteStatusStore

__all__ = ["SqliteDedupStore", "SqliteStatusStore"]
