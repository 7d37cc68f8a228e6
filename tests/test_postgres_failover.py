"""A failover of the database: the stores find the promoted standby by themselves.

docs/scaling.md tells an operator with a standby to list both servers in
``database_url`` with ``target_session_attrs=read-write``. Here a primary and its
streaming standby run side by side (`broker.devdb`); the primary is lost (an immediate
shutdown), the standby is promoted, and the same stores, untouched, carry on against
it: what the primary had committed is there, and new claims are made. In between,
every use fails as a store fault (`TransientError`: the worker holds the message and
pauses), never as anything else.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from broker import devdb
from broker.devdb.standby import promote, start_standby
from broker.errors import TransientError
from broker.settings import load_settings
from broker.stores.backend import Stores
from broker.stores.dedup import ClaimState
from broker.stores.journal import EventKind, StatusEvent
from tests import tools
from tests.polling import eventually

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PORTAL = "psw:portal-1"
DIGEST = "ab" * 32

pytestmark = pytest.mark.postgres


@dataclass
class Pair:
    primary: devdb.ClusterInfo
    standby: devdb.ClusterInfo
    primary_root: Path

    def url(self) -> str:
        """Both servers, the standby first: a connection must pass over it to the one
        that accepts writes (without the attribute the first write fails: read-only)."""
        return (
            f"postgresql://{self.primary.user}:{self.primary.password}@"
            f"127.0.0.1:{self.standby.port},127.0.0.1:{self.primary.port}/xbroker"
            "?target_session_attrs=read-write"
        )


@pytest.fixture
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    # Under the checkout, not tmp_path: with the tests run as root the server runs as the
    # `postgres` OS user, and pytest's temporary folders are closed to other users (the
    # cluster would move out to /var/tmp).
    base = request.config.rootpath / ".xbroker" / "failover" / secrets.token_hex(4)
    primary_root, standby_root = base / "primary", base / "standby"
    try:
        primary = devdb.ensure_cluster(primary_root)
        try:
            standby = start_standby(primary, standby_root)
        except devdb.DevDatabaseError:
            devdb.stop_cluster(primary_root, crash=True)
            raise
    except devdb.DevDatabaseError as exc:
        tools.unavailable("a PostgreSQL primary and standby", str(exc))
    try:
        yield Pair(primary, standby, primary_root)
    finally:
        for root in (primary_root, standby_root):
            devdb.stop_cluster(root, crash=True)
        # A checkout closed to the server's user keeps the clusters outside it.
        for folder in (primary.base, standby.base, base):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def stores(pair: Pair, tmp_path: Path) -> AsyncIterator[Stores]:
    settings = load_settings(
        EXAMPLES / "xbroker.toml",
        state_dir=tmp_path,
        metrics_port=0,
        database_url=pair.url(),
        database_statement_timeout_seconds=2.0,
        database_connect_timeout_seconds=2.0,
    )
    opened = Stores(settings)
    try:
        yield opened
    finally:
        await opened.close()


async def _replayed(primary: devdb.ClusterInfo, standby: devdb.ClusterInfo) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    conn = await asyncpg.connect(primary.url)
    try:
        written = await conn.fetchval("SELECT pg_current_wal_lsn()")
    finally:
        await conn.close()

    async def replayed() -> bool:
        follower = await asyncpg.connect(standby.url)
        try:
            lsn = await follower.fetchval("SELECT pg_last_wal_replay_lsn()")
        finally:
            await follower.close()
        return lsn is not None and lsn >= written

    await eventually(replayed, what="the standby caught up with the primary", timeout=60)


async def test_the_stores_carry_on_against_the_promoted_standby(pair: Pair, stores: Stores) -> None:
    dedup, status = stores.dedup(), stores.status()
    before = await dedup.claim(PORTAL, "before-failover", DIGEST)
    await status.record_many(
        [StatusEvent("before-failover", EventKind.ACCEPTED, author=PORTAL, digest=DIGEST)]
    )
    await dedup.complete(PORTAL, "before-failover")
    assert before.state is ClaimState.NEW
    await _replayed(pair.primary, pair.standby)

    devdb.stop_cluster(pair.primary_root, crash=True)

    # No server takes writes now (the standby is read-only): a store fault, no other kind.
    with pytest.raises(TransientError):
        await dedup.claim(PORTAL, "during-failover", DIGEST)

    promote(pair.standby)

    async def claim_after() -> ClaimState | None:
        try:
            return (await dedup.claim(PORTAL, "after-failover", DIGEST)).state
        except TransientError:  # the pool's lost connections are replaced one by one
            return None

    assert await eventually(claim_after, what="a claim on the promoted standby") in (
        ClaimState.NEW,
        ClaimState.RETRY,  # a first try reached the server but not its answer
    )
    again = await dedup.claim(PORTAL, "before-failover", DIGEST)
    assert again.state is ClaimState.DUPLICATE  # completed on the primary, kept
    timeline = await status.timeline("before-failover")
    assert [e.kind for e in timeline.events] == [EventKind.ACCEPTED]
    assert "127.0.0.1" in stores.where() and pair.primary.password not in stores.where()
