"""The audit trail survives a full disk: no torn line blocks it, no failed write stays.

A write that fails is cut off again; an incomplete last line (a process killed in the
middle of a write) is cut off by the next append or open, which says so in a ``repair``
entry; a seal that cannot be written at shutdown is written at the next start. The trail
verifies after each of these.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from broker.errors import StoreError
from broker.stores.audit import AuditError, AuditTrail, verify_trail
from broker.stores.audit import trail as trail_module
from broker.stores.journal import EventKind, StatusEvent
from signing import Signer, TrustStore, Verifier
from signing.devpki import init_dev_pki
from signing.keyfiles import party_paths

BROKER = "xbr:broker"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pki")
    init_dev_pki(path, [(BROKER, "xbroker")])
    return path


@pytest.fixture(scope="module")
def verifier(pki: Path) -> Verifier:
    return Verifier(TrustStore.from_dirs(pki / "trust"))


@pytest.fixture
def sign(pki: Path) -> Callable[..., bytes]:
    cert, key = party_paths(pki, BROKER)
    return Signer.from_files(key, cert).sign


def event(n: int) -> StatusEvent:
    return StatusEvent(f"00000000-0000-4000-8000-{n:012d}", EventKind.RECEIVED)


def entries(path: Path) -> list[str]:
    """The type of each line."""
    return [json.loads(line)["type"] for line in path.read_bytes().splitlines()]


def test_an_incomplete_last_line_is_cut_off_at_open_with_a_repair_entry(
    tmp_path: Path, sign: Callable[..., bytes], verifier: Verifier
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, issuer=BROKER, sign=sign)
    trail.record_many([event(1), event(2)])
    trail.close()
    with path.open("ab") as f:
        f.write(b'{"at":"2026-01-01T00:00:00+00:00","event":{"kind":"rec')  # killed mid-write

    AuditTrail(path, issuer=BROKER, sign=sign).close()

    assert entries(path)[-2:] == ["repair", "seal"]
    report = verify_trail(path, verifier, BROKER)
    assert report.ok, report.problems


def test_an_append_after_a_torn_write_by_another_process_repairs_first(
    tmp_path: Path, sign: Callable[..., bytes], verifier: Verifier
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, issuer=BROKER, sign=sign, seal_every=1000)
    trail.record(event(1))
    with path.open("ab") as f:
        f.write(b'{"seq":2,"prev":"')

    trail.record(event(3))

    assert entries(path) == ["event", "repair", "event"]
    assert verify_trail(path, verifier, BROKER).ok


def test_a_write_that_fails_part_way_is_cut_off_and_the_next_one_succeeds(
    tmp_path: Path, sign: Callable[..., bytes], verifier: Verifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, issuer=BROKER, sign=sign, seal_every=1000)
    trail.record(event(1))
    before = path.read_bytes()

    def half_then_full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trail_module, "_write_all", half_then_full)
    with pytest.raises(StoreError, match="No space left"):
        trail.record_many([event(2), event(3)])
    assert path.read_bytes() == before

    monkeypatch.undo()
    trail.record_many([event(2), event(3)])
    assert entries(path) == ["event", "event", "event"]
    assert verify_trail(path, verifier, BROKER).ok


def test_a_seal_that_fails_at_close_is_written_at_the_next_open(
    tmp_path: Path, sign: Callable[..., bytes], verifier: Verifier
) -> None:
    path = tmp_path / "audit.jsonl"

    def no_space(document: object) -> bytes:
        raise StoreError("No space left on device")

    trail = AuditTrail(path, issuer=BROKER, sign=no_space, seal_every=1000)
    trail.record_many([event(1), event(2)])
    trail.close()  # does not raise
    assert entries(path) == ["event", "event"]

    AuditTrail(path, issuer=BROKER, sign=sign, seal_every=1000)

    assert entries(path) == ["event", "event", "seal"]
    report = verify_trail(path, verifier, BROKER)
    assert (report.ok, report.unsealed) == (True, 0)


def test_a_complete_last_line_that_is_no_entry_is_damage_and_stops_appends(
    tmp_path: Path, sign: Callable[..., bytes]
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, issuer=BROKER, sign=sign, seal_every=1000)
    trail.record(event(1))
    with path.open("ab") as f:
        f.write(b"not an entry\n")

    with pytest.raises(AuditError, match="not an entry"):
        AuditTrail(path, issuer=BROKER, sign=sign, seal_every=1000).record(event(2))
