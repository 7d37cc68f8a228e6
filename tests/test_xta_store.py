"""The XTA store's bookkeeping of message boxes, shared by the endpoint processes of a host,
and the retention the boxes must have for it to hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.errors import ConfigurationError
from broker.settings import load_settings
from broker.stores.xta import BoxEntry, CloseResult, Outcome, XtaStore
from tests.world import EXAMPLES

BOX = "bau:02000000"
NOW = datetime.now(UTC)


def _entry(offset: int, *, queued: datetime = NOW) -> BoxEntry:
    return BoxEntry(
        kennung=BOX,
        message_id=f"urn:test:{offset}",
        uuid=f"uuid-{offset}",
        author="osi:hh-portal",
        nachrichtentyp="bau.antrag.0200",
        offset=offset,
        digest="ab" * 32,
        metadata={},
        published=None,
        queued=queued,
    )


@pytest.fixture
def stores(tmp_path: Path) -> tuple[XtaStore, XtaStore]:
    """Two connections to one file: two endpoint processes."""
    return XtaStore(tmp_path / "xta.sqlite3"), XtaStore(tmp_path / "xta.sqlite3")


def test_the_cursor_starts_at_the_stream_s_first_entry(stores: tuple[XtaStore, XtaStore]) -> None:
    assert stores[0].next_offset(BOX) is None


def test_the_cursor_moves_past_copies_and_entries_that_are_none(
    stores: tuple[XtaStore, XtaStore],
) -> None:
    here, there = stores
    here.index(_entry(0))
    here.skip(BOX, 1)
    there.skip(BOX, 2, padding=True)

    assert (here.next_offset(BOX), there.padding(BOX).offset) == (3, 2)


def test_the_cursor_never_moves_back(stores: tuple[XtaStore, XtaStore]) -> None:
    here, there = stores
    here.index(_entry(7))
    there.index(_entry(3))  # a process that was behind

    assert here.next_offset(BOX) == 8


def test_a_copy_indexed_by_two_processes_is_one_row(stores: tuple[XtaStore, XtaStore]) -> None:
    here, there = stores

    assert [here.index(_entry(4)), there.index(_entry(4))] == [True, False]
    assert [e.offset for e in here.waiting(BOX, 10)[0]] == [4]


def test_only_one_process_takes_a_copy_s_expiry(stores: tuple[XtaStore, XtaStore]) -> None:
    here, there = stores
    here.index(_entry(0, queued=NOW - timedelta(days=20)))
    lease_before = datetime.now(UTC) - timedelta(minutes=5)

    due = there.due_to_expire(NOW - timedelta(days=14), lease_before)
    claims = [s.claim_expiry(BOX, "urn:test:0", lease_before) for s in (here, there)]

    assert [e.offset for e in due] == [0]
    assert claims == [True, False]
    assert here.waiting(BOX, 10)[0] == ()  # not listed while it expires


def test_a_lease_that_ran_out_can_be_taken_again(stores: tuple[XtaStore, XtaStore]) -> None:
    here, there = stores
    here.index(_entry(0, queued=NOW - timedelta(days=20)))
    assert here.claim_expiry(BOX, "urn:test:0", datetime.now(UTC) - timedelta(minutes=5))

    assert there.claim_expiry(BOX, "urn:test:0", datetime.now(UTC) + timedelta(seconds=1))


def test_an_expired_copy_cannot_be_closed_and_is_due_no_more(
    stores: tuple[XtaStore, XtaStore],
) -> None:
    here, there = stores
    here.index(_entry(0, queued=NOW - timedelta(days=20)))
    here.claim_expiry(BOX, "urn:test:0", NOW)
    here.expired(BOX, "urn:test:0")

    assert there.close_entry(BOX, "urn:test:0") is CloseResult.GONE
    assert there.due_to_expire(NOW, NOW) == ()
    entry = there.entry(BOX, "urn:test:0")
    assert entry is not None and entry.outcome is Outcome.EXPIRED


def test_a_closed_copy_is_closed_once_and_never_expires(
    stores: tuple[XtaStore, XtaStore],
) -> None:
    here, there = stores
    here.index(_entry(0, queued=NOW - timedelta(days=20)))

    results = [here.close_entry(BOX, "urn:test:0"), there.close_entry(BOX, "urn:test:0")]

    assert results == [CloseResult.CLOSED, CloseResult.CLOSED_BEFORE]
    assert there.due_to_expire(NOW, NOW) == ()
    assert not there.claim_expiry(BOX, "urn:test:0", NOW)


def test_one_process_takes_a_box_s_turn_to_pad(stores: tuple[XtaStore, XtaStore]) -> None:
    here, there = stores
    here.index(_entry(0))
    not_since = datetime.now(UTC) - timedelta(hours=6)

    assert [here.claim_padding(BOX, not_since), there.claim_padding(BOX, not_since)] == [
        True,
        False,
    ]
    assert here.padding(BOX).newest_copy == 0


def test_a_box_that_would_drop_copies_before_they_expire_is_refused_at_start() -> None:
    with pytest.raises(ConfigurationError, match="xta_box_max_age_days"):
        load_settings(EXAMPLES / "xbroker.toml", expire_after_days=14, xta_box_max_age_days=14)


def test_a_box_keeps_its_copies_past_their_expiry_by_default() -> None:
    settings = load_settings(EXAMPLES / "xbroker.toml")

    assert settings.box_max_age_seconds > settings.expire_after_days * 86400
