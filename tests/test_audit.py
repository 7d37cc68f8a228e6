"""The audit trail: hash chain, seals, checkpoints, and naming the line that was tampered."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree

from broker.stores.audit import AuditTrail, verify_trail
from broker.stores.audit.trail import canonical, entry_hash
from broker.stores.journal import EventKind, StatusEvent
from signing import Signer, TrustStore, Verifier
from signing.devpki import init_dev_pki
from signing.keyfiles import party_paths

BROKER = "xbr:broker"
OTHER = "osi:hh-portal"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pki")
    init_dev_pki(path, [(BROKER, "xbroker"), (OTHER, "Portal")])
    return path


def _signer(pki: Path, kennung: str = BROKER) -> Signer:
    cert, key = party_paths(pki, kennung)
    return Signer.from_files(key, cert)


@pytest.fixture(scope="module")
def verifier(pki: Path) -> Verifier:
    return Verifier(TrustStore.from_dirs(pki / "trust"))


def _event(n: int, at: datetime | None = None) -> StatusEvent:
    return StatusEvent(
        f"00000000-0000-4000-8000-{n:012d}",
        EventKind.ACCEPTED,
        author="osi:hh-portal",
        recipients=("psw:02000000",),
        digest="ab" * 32,
        at=at or datetime.now(UTC),
    )


def _trail(path: Path, pki: Path, events: int, seal_every: int = 4) -> Path:
    trail = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign, seal_every=seal_every)
    for n in range(events):
        trail.record(_event(n))
    trail.close()
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _write(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def _problem(path: Path, verifier: Verifier) -> str:
    report = verify_trail(path, verifier, BROKER)
    assert not report.ok, "the tampering went unnoticed"
    return str(report.problems[0])


def test_untouched_trail_verifies_with_every_seal(
    tmp_path: Path, pki: Path, verifier: Verifier
) -> None:
    path = _trail(tmp_path / "audit.jsonl", pki, events=10)

    report = verify_trail(path, verifier, BROKER)

    assert report.ok, report.problems
    assert report.seals == 3  # after entries 4 and 8 of the events, and on close
    assert report.unsealed == 0


def test_each_line_commits_to_the_line_before(tmp_path: Path, pki: Path) -> None:
    path = _trail(tmp_path / "audit.jsonl", pki, events=3)

    entries = [json.loads(line) for line in _lines(path)]

    assert entries[0]["prev"] == "0" * 64
    assert [e["prev"] for e in entries[1:]] == [e["hash"] for e in entries[:-1]]
    assert all(e["hash"] == entry_hash(e) for e in entries)


def test_one_flipped_byte_names_its_entry(tmp_path: Path, pki: Path, verifier: Verifier) -> None:
    path = _trail(tmp_path / "audit.jsonl", pki, events=6)
    lines = _lines(path)
    target = lines[2]
    at = target.index(b"psw:02000000") + 4
    lines[2] = target[:at] + bytes([target[at] ^ 0x01]) + target[at + 1 :]
    _write(path, lines)

    assert _problem(path, verifier).startswith("line 3 (entry 3): altered")


def test_a_deleted_entry_is_named(tmp_path: Path, pki: Path, verifier: Verifier) -> None:
    path = _trail(tmp_path / "audit.jsonl", pki, events=6)
    lines = _lines(path)
    del lines[1]
    _write(path, lines)

    assert "deleted: entry 2 missing" in _problem(path, verifier)


def test_an_inserted_entry_is_named_even_with_a_valid_hash(
    tmp_path: Path, pki: Path, verifier: Verifier
) -> None:
    path = _trail(tmp_path / "audit.jsonl", pki, events=6)
    lines = _lines(path)
    genuine = json.loads(lines[2])
    forged = {**genuine, "event": {**genuine["event"], "reason": "forged"}}
    forged["hash"] = entry_hash(forged)
    lines.insert(2, canonical(forged) + b"\n")
    _write(path, lines)

    problem = _problem(path, verifier)

    assert problem.startswith("line 3 (entry 3): inserted")


def test_a_swapped_pair_is_named(tmp_path: Path, pki: Path, verifier: Verifier) -> None:
    path = _trail(tmp_path / "audit.jsonl", pki, events=6)
    lines = _lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    _write(path, lines)

    assert "reordered: entries 2 and 3 are swapped (lines 2 and 3)" in _problem(path, verifier)


def test_a_chain_rewritten_with_fresh_hashes_fails_at_the_next_seal(
    tmp_path: Path, pki: Path, verifier: Verifier
) -> None:
    path = _trail(tmp_path / "audit.jsonl", pki, events=3, seal_every=100)
    lines = [json.loads(line) for line in _lines(path)]
    lines[0]["event"]["reason"] = "rewritten"
    prev = "0" * 64
    for entry in lines:
        entry["prev"] = prev
        entry["hash"] = prev = entry_hash(entry)
    _write(path, [canonical(e) + b"\n" for e in lines])

    problem = _problem(path, verifier)

    assert problem.startswith("line 4 (entry 4): forged seal")


def test_a_seal_signed_by_another_key_is_refused(
    tmp_path: Path, pki: Path, verifier: Verifier
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, issuer=BROKER, sign=_signer(pki, OTHER).sign)
    trail.record(_event(1))
    trail.close()

    assert "forged seal" in _problem(path, verifier)


def test_entries_past_retention_are_pruned_behind_a_checkpoint_and_the_rest_verifies(
    tmp_path: Path, pki: Path, verifier: Verifier
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign, seal_every=1000)
    old = datetime.now(UTC) - timedelta(days=400)
    for n in range(5):
        trail.record(_event(n, at=old))
    trail.seal()
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    later = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign)

    dropped = later.prune(cutoff)
    later.record(_event(99))
    later.close()

    report = verify_trail(path, verifier, BROKER)
    assert dropped == 6
    assert report.ok, report.problems
    assert report.pruned_through == 6
    assert json.loads(_lines(path)[0])["type"] == "checkpoint"


def test_prune_keeps_entries_younger_than_the_cutoff(tmp_path: Path, pki: Path) -> None:
    path = _trail(tmp_path / "audit.jsonl", pki, events=3)
    trail = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign)

    dropped = trail.prune(datetime.now(UTC) - timedelta(days=1))

    assert dropped == 0
    assert json.loads(_lines(path)[0])["type"] == "event"


def test_a_tampered_checkpoint_is_refused(tmp_path: Path, pki: Path, verifier: Verifier) -> None:
    path = _trail(tmp_path / "audit.jsonl", pki, events=4)
    trail = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign)
    trail.prune(datetime.now(UTC) + timedelta(seconds=1))
    trail.record(_event(7))
    trail.close()
    lines = _lines(path)
    checkpoint = json.loads(lines[0])
    checkpoint["through"] += 1
    checkpoint["hash"] = entry_hash(checkpoint)
    lines[0] = canonical(checkpoint) + b"\n"
    _write(path, lines)

    assert "forged checkpoint" in _problem(path, verifier)


def test_two_writers_on_one_file_keep_one_chain(
    tmp_path: Path, pki: Path, verifier: Verifier
) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign)
    second = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign)

    for n in range(4):
        (first if n % 2 else second).record(_event(n))
    first.close()
    second.close()

    report = verify_trail(path, verifier, BROKER)
    assert report.ok, report.problems
    assert report.entries == 6  # four events, one seal from each writer


def test_the_trail_holds_metadata_fields_only(tmp_path: Path, pki: Path) -> None:
    path = _trail(tmp_path / "audit.jsonl", pki, events=1)

    entry = json.loads(_lines(path)[0])

    assert set(entry["event"]) <= {
        "uuid",
        "kind",
        "at",
        "author",
        "agency",
        "nachrichtentyp",
        "standard",
        "sha256",
        "reason",
        "recipients",
    }


def test_a_batch_is_appended_as_consecutive_chained_entries(
    tmp_path: Path, pki: Path, verifier: Verifier
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign, seal_every=1000)
    trail.record(_event(0))

    trail.record_many([_event(n) for n in range(1, 4)])
    trail.close()

    entries = [json.loads(line) for line in _lines(path)]
    assert [e["seq"] for e in entries] == [1, 2, 3, 4, 5]
    assert [e["type"] for e in entries] == ["event"] * 4 + ["seal"]
    assert verify_trail(path, verifier, BROKER).ok


def test_a_seal_falls_due_after_the_batch_that_reaches_seal_every(
    tmp_path: Path, pki: Path
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign, seal_every=4)

    trail.record_many([_event(n) for n in range(3)])
    trail.record_many([_event(n) for n in range(3, 6)])

    assert [json.loads(line)["type"] for line in _lines(path)] == ["event"] * 6 + ["seal"]


def test_two_writers_appending_batches_to_one_file_keep_one_chain(
    tmp_path: Path, pki: Path, verifier: Verifier
) -> None:
    path = tmp_path / "audit.jsonl"
    first = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign, seal_every=1000)
    second = AuditTrail(path, issuer=BROKER, sign=_signer(pki).sign, seal_every=1000)

    for n in range(4):
        (first if n % 2 else second).record_many([_event(10 * n + k) for k in range(3)])
    first.close()
    second.close()

    report = verify_trail(path, verifier, BROKER)
    assert report.ok, report.problems
    assert report.entries == 14  # twelve events, one seal from each writer


def test_a_seal_that_fails_leaves_the_batch_written_and_the_seal_due(
    tmp_path: Path, pki: Path, verifier: Verifier
) -> None:
    path = tmp_path / "audit.jsonl"
    signer = _signer(pki)
    broken = True

    def sign(document: etree._Element) -> bytes:
        if broken:
            raise OSError("the key is not readable")
        return signer.sign(document)

    trail = AuditTrail(path, issuer=BROKER, sign=sign, seal_every=2)
    trail.record_many([_event(1), _event(2)])
    written = [json.loads(line)["type"] for line in _lines(path)]
    broken = False
    trail.record(_event(3))

    assert written == ["event", "event"]
    assert [json.loads(line)["type"] for line in _lines(path)] == ["event"] * 3 + ["seal"]
    assert verify_trail(path, verifier, BROKER).ok
