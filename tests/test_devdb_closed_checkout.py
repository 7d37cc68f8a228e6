"""A checkout in a folder closed to other users still gets its local PostgreSQL cluster.

Run as root, the server runs as the ``postgres`` OS user, which cannot enter a folder
of mode 0700 owned by root (a home folder, a ``mktemp -d``): the cluster's files then
live in a folder of the checkout's own under /var/tmp, and the cluster starts, answers
and stops as in an open checkout, and `xbroker db remove` deletes it there.
"""

from __future__ import annotations

import os
from pathlib import Path

import asyncpg
import pytest

from broker import devdb
from tests import tools

pytestmark = pytest.mark.postgres


async def test_a_checkout_closed_to_the_server_user_gets_a_cluster(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    checkout = closed / "checkout"
    checkout.mkdir(parents=True)
    closed.chmod(0o700)
    try:
        cluster = devdb.ensure_cluster(checkout)
    except devdb.DevDatabaseError as exc:
        tools.unavailable("a local PostgreSQL cluster", str(exc))
    try:
        inside = cluster.data_dir.is_relative_to(checkout)
        assert inside is (os.geteuid() != 0), cluster.data_dir  # root: the server is `postgres`
        connection = await asyncpg.connect(cluster.url, timeout=30)
        try:
            assert await connection.fetchval("SELECT 1") == 1
        finally:
            await connection.close()
        assert devdb.cluster_status(checkout) is not None
    finally:
        assert devdb.stop_cluster(checkout)
        assert devdb.cluster_status(checkout) is None
        assert devdb.remove_cluster(checkout) == cluster.base
    assert not cluster.base.exists()  # under /var/tmp too: `make clean` leaves nothing
    assert devdb.remove_cluster(checkout) is None
