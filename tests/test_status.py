"""The status store: the Laufzettel of each message, who may see it, HTTP idempotency claims.

Every store test runs against both stores: the SQLite file of one host and the
PostgreSQL database of several (`tests.postgres_fixtures.Backend`).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from broker.cli import main
from broker.errors import StoreError
from broker.stores.journal import EventKind, StatusEvent
from broker.stores.sqlite import SqliteStatusStore
from broker.stores.status import StatusStore, SubmissionMatch
from tests.postgres_fixtures import Backend

UUID = "6f1c2d3e-4a5b-4c6d-8e7f-001122334455"
PORTAL = "osi:hh-portal"
HAMBURG = "psw:02000000"
NORDERSTEDT = "psw:01060063"


async def _delivered_twice(store: StatusStore) -> None:
    await store.record(StatusEvent(UUID, EventKind.RECEIVED))
    await store.record(
        StatusEvent(
            UUID,
            EventKind.ACCEPTED,
            author=PORTAL,
            nachrichtentyp="meldung.anmeldung.0200",
            standard="xmeld/1.1",
            digest="ab" * 32,
            recipients=(HAMBURG, NORDERSTEDT),
        )
    )
    for agency in (HAMBURG, NORDERSTEDT):
        await store.record(StatusEvent(UUID, EventKind.QUEUED, author=PORTAL, agency=agency))
    await store.record(StatusEvent(UUID, EventKind.DELIVERED, author=PORTAL, agency=HAMBURG))


@pytest.fixture
def store(backend: Backend) -> StatusStore:
    return backend.stores().status()


async def test_timeline_lists_the_events_of_one_message_oldest_first(store: StatusStore) -> None:
    await _delivered_twice(store)
    await store.record(StatusEvent("another", EventKind.RECEIVED))

    laufzettel = await store.timeline(UUID)

    assert [e.kind for e in laufzettel.events] == [
        EventKind.RECEIVED,
        EventKind.ACCEPTED,
        EventKind.QUEUED,
        EventKind.QUEUED,
        EventKind.DELIVERED,
    ]
    assert laufzettel.state == "delivered"
    assert laufzettel.author == PORTAL
    assert laufzettel.recipients == (HAMBURG, NORDERSTEDT)


async def test_every_field_of_an_event_is_kept(store: StatusStore) -> None:
    event = StatusEvent(
        UUID,
        EventKind.REJECTED,
        author=PORTAL,
        nachrichtentyp="meldung.anmeldung.0200",
        standard="xmeld/1.1",
        digest="cd" * 32,
        reason="schema-invalid",
    )
    await store.record(event)

    assert (await store.timeline(UUID)).events == (event,)


async def test_the_author_sees_every_event_of_its_message(store: StatusStore) -> None:
    await _delivered_twice(store)

    seen = (await store.timeline(UUID)).seen_by(PORTAL)

    assert [e.kind for e in seen.events] == [
        EventKind.ACCEPTED,
        EventKind.QUEUED,
        EventKind.QUEUED,
        EventKind.DELIVERED,
    ]
    assert seen.recipients == (HAMBURG, NORDERSTEDT)


async def test_an_event_written_before_the_author_was_known_concerns_nobody(
    store: StatusStore,
) -> None:
    # Under one UUID it may belong to another author's message.
    await _delivered_twice(store)

    for kennung in (PORTAL, HAMBURG, NORDERSTEDT):
        assert EventKind.RECEIVED not in {
            e.kind for e in (await store.timeline(UUID)).seen_by(kennung).events
        }


async def test_a_recipient_sees_its_own_copy_but_not_another_recipients(store: StatusStore) -> None:
    await _delivered_twice(store)

    seen = (await store.timeline(UUID)).seen_by(NORDERSTEDT)

    assert [(e.kind, e.agency) for e in seen.events] == [
        (EventKind.ACCEPTED, None),
        (EventKind.QUEUED, NORDERSTEDT),
    ]


async def test_a_recipient_is_not_told_who_else_received_the_message(store: StatusStore) -> None:
    await _delivered_twice(store)

    seen = (await store.timeline(UUID)).seen_by(NORDERSTEDT)

    assert seen.recipients == (NORDERSTEDT,)
    assert [e.get("recipients") for e in seen.as_dict()["events"]] == [[NORDERSTEDT], None]


async def test_a_stranger_sees_nothing(store: StatusStore) -> None:
    await _delivered_twice(store)

    assert (await store.timeline(UUID)).seen_by("gew:02000000").events == ()


async def test_an_unknown_message_has_an_empty_timeline(store: StatusStore) -> None:
    assert (await store.timeline(UUID)).state == "unknown"


async def test_a_second_process_reads_what_the_first_wrote(
    store: StatusStore, backend: Backend
) -> None:
    # On PostgreSQL the second process is as good as another host.
    await _delivered_twice(store)

    reader = backend.stores().status()

    assert len((await reader.timeline(UUID)).events) == 5


async def test_a_first_submission_is_new(store: StatusStore) -> None:
    assert (await store.claim_submission(UUID, PORTAL, "ab" * 32)).match is SubmissionMatch.NEW


async def test_the_same_bytes_again_are_the_same_submission(store: StatusStore) -> None:
    await store.claim_submission(UUID, PORTAL, "ab" * 32)

    assert (await store.claim_submission(UUID, PORTAL, "ab" * 32)).match is SubmissionMatch.SAME


async def test_other_bytes_under_a_used_uuid_conflict(store: StatusStore) -> None:
    await store.claim_submission(UUID, PORTAL, "ab" * 32)

    claim = await store.claim_submission(UUID, PORTAL, "cd" * 32)

    assert claim.match is SubmissionMatch.CONFLICT
    assert claim.digest == "ab" * 32


async def test_a_released_claim_is_new_again(store: StatusStore) -> None:
    await store.claim_submission(UUID, PORTAL, "ab" * 32)
    await store.release_submission(UUID, PORTAL, "ab" * 32)

    assert (await store.claim_submission(UUID, PORTAL, "cd" * 32)).match is SubmissionMatch.NEW


async def test_another_authors_uuid_is_a_new_submission_of_ones_own(store: StatusStore) -> None:
    await store.claim_submission(UUID, PORTAL, "ab" * 32)

    claim = await store.claim_submission(UUID, HAMBURG, "cd" * 32)

    assert (claim.match, claim.author, claim.digest) == (SubmissionMatch.NEW, HAMBURG, "cd" * 32)


async def test_a_claim_taken_first_by_another_author_leaves_the_authors_own_claim_new(
    store: StatusStore,
) -> None:
    await store.claim_submission(UUID, HAMBURG, "cd" * 32)

    assert (await store.claim_submission(UUID, PORTAL, "ab" * 32)).match is SubmissionMatch.NEW
    assert (await store.claim_submission(UUID, PORTAL, "ab" * 32)).match is SubmissionMatch.SAME


async def test_claims_keyed_by_uuid_alone_move_over_keyed_by_author(tmp_path: Path) -> None:
    path = tmp_path / "status.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE submissions (uuid TEXT PRIMARY KEY, author TEXT NOT NULL, "
            "digest TEXT NOT NULL, at TEXT NOT NULL) WITHOUT ROWID"
        )
        old.execute(
            "INSERT INTO submissions VALUES (?, ?, ?, ?)",
            (UUID, PORTAL, "ab" * 32, "2026-11-30T10:00:00+00:00"),
        )
    old.close()

    store = SqliteStatusStore(path)

    assert (await store.claim_submission(UUID, PORTAL, "ab" * 32)).match is SubmissionMatch.SAME
    assert (await store.claim_submission(UUID, HAMBURG, "ab" * 32)).match is SubmissionMatch.NEW
    await store.close()


def _config(backend: Backend, tmp_path: Path) -> Path:
    """The settings of another host: on SQLite only the same state dir shares the store,
    on PostgreSQL another host has a state dir of its own and the same database."""
    settings = backend.settings
    config = tmp_path / "host-b.toml"
    if settings.database_url is None:
        config.write_text(f'state_dir = "{settings.state_dir}"\n')
    else:
        config.write_text(
            f'state_dir = "{tmp_path / "host-b"}"\ndatabase_url = "{settings.database_url}"\n'
        )
    return config


async def _status(*args: str) -> int:
    # The command runs its own event loop, as it does in a shell.
    return await asyncio.to_thread(main, list(args))


async def test_status_command_on_another_host_prints_the_timeline(
    store: StatusStore, backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _delivered_twice(store)

    code = await _status("--config", str(_config(backend, tmp_path)), "status", UUID)

    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert out[0] == f"{UUID}: delivered"
    assert [line.split()[1] for line in out[1:]] == [
        "received",
        "accepted",
        "queued",
        "queued",
        "delivered",
    ]


async def test_status_command_prints_json(
    store: StatusStore, backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _delivered_twice(store)

    await _status("--config", str(_config(backend, tmp_path)), "status", UUID, "--json")

    document = json.loads(capsys.readouterr().out)
    assert document["state"] == "delivered"
    assert document["recipients"] == [HAMBURG, NORDERSTEDT]
    assert document["events"][1]["sha256"] == "ab" * 32


async def test_status_command_fails_for_an_unknown_message(
    store: StatusStore, backend: Backend, tmp_path: Path
) -> None:
    await store.record(StatusEvent("another", EventKind.RECEIVED))

    assert await _status("--config", str(_config(backend, tmp_path)), "status", UUID) == 1


async def test_status_command_reads_many_uuids_from_a_file(
    store: StatusStore, backend: Backend, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "0a1b2c3d-4e5f-4a6b-8c7d-8e9fa0b1c2d3"
    await _delivered_twice(store)
    await store.record(StatusEvent(other, EventKind.ACCEPTED, author=PORTAL))
    listed = tmp_path / "uuids.txt"
    listed.write_text(f"{other}\n\n{UUID}\n")
    config = str(_config(backend, tmp_path))

    code = await _status("--config", config, "status", "--from", str(listed), "--json")

    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [(d["uuid"], d["state"]) for d in map(json.loads, lines)] == [
        (other, "accepted"),
        (UUID, "delivered"),
    ]
    listed.write_text(f"{UUID}\nnever-seen\n")
    assert await _status("--config", config, "status", "--from", str(listed)) == 1
    assert "never-seen: unknown" in capsys.readouterr().out.splitlines()


def test_status_command_without_a_store_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "xbroker.toml"
    config.write_text(f'state_dir = "{tmp_path}"\n')

    assert main(["--config", str(config), "status", UUID]) == 2
    assert "no status store" in capsys.readouterr().out


async def test_a_batch_of_events_is_kept_in_its_order(store: StatusStore) -> None:
    kinds = (EventKind.RECEIVED, EventKind.QUEUED, EventKind.QUEUED, EventKind.ACCEPTED)

    await store.record_many([StatusEvent(UUID, kind, author=PORTAL) for kind in kinds])

    assert tuple(e.kind for e in (await store.timeline(UUID)).events) == kinds


async def test_an_event_written_late_is_listed_at_its_time(store: StatusStore) -> None:
    # An endpoint stamps "received" before publishing and writes it once RabbitMQ has
    # the message; a worker may have written its own events by then.
    received = StatusEvent(UUID, EventKind.RECEIVED, author=PORTAL)
    await store.record(StatusEvent(UUID, EventKind.ACCEPTED, author=PORTAL))
    await store.record(received)

    laufzettel = await store.timeline(UUID)

    assert [e.kind for e in laufzettel.events] == [EventKind.RECEIVED, EventKind.ACCEPTED]
    assert laufzettel.state == "accepted"


async def test_a_batch_with_one_unwritable_event_writes_none_of_them(store: StatusStore) -> None:
    unwritable = StatusEvent(None, EventKind.QUEUED)  # type: ignore[arg-type]

    with pytest.raises(Exception, match=r"(?i)null") as raised:
        await store.record_many([StatusEvent(UUID, EventKind.RECEIVED), unwritable])

    assert not isinstance(raised.value, StoreError)  # a bug, not a fault to wait out
    assert (await store.timeline(UUID)).events == ()
    await store.record(StatusEvent(UUID, EventKind.RECEIVED))  # no transaction left open
    assert len((await store.timeline(UUID)).events) == 1
