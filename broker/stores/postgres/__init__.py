"""The stores in one PostgreSQL database that several broker hosts share.

Modules::

    database    the pool, the presence that vouches for claims, faults as StoreError
    migrations  the schema as numbered SQL files (migrations/), applied once each
    dedup       the deduplication claim (`broker.stores.dedup`)
    status      the status store, the Laufzettel (`broker.stores.status`)
"""

from __future__ import annotations

from broker.stores.postgres.database import Database
from broker.stores.postgres.dedup import PostgresDedupStore
from broker.stores.postgres.status import PostgresStatusStore

__all__ = ["Database", "PostgresDedupStore", "PostgresStatusStore"]
