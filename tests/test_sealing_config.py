"""A sealed agency without a usable encryption key is a configuration error, found at
directory load, at start, at reload and by ``xbroker doctor``, never at the first message.

No RabbitMQ: the directory, the sealer's key check and the doctor's sealing check
against a PKI made for each test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from broker.ops.doctor.findings import Status
from broker.ops.doctor.sealing import check_sealing
from broker.settings import load_settings
from broker.worker.reload import DirectoryWatcher
from broker.worker.sealer import Sealer, check_keys, key_problems
from routing import Directory, DirectoryError, read_parties
from sealing import KeyRing, RecipientKey, SealingKeyError, SealLimits
from signing import TrustStore
from signing.devpki import init_dev_pki, issue, issue_encryption, revoke, setup_ca
from signing.keyfiles import encryption_paths
from tests.world import EXAMPLES

AGENCY = "psw:02000000"
BROKER = "xbroker:hh"


def _pki(root: Path) -> Path:
    setup_ca(root)
    parties = root / "parties"
    issue(root / "ca", AGENCY, "Meldebehörde", parties, key_type="ec")
    issue_encryption(root / "ca", AGENCY, "Meldebehörde", root)
    return root


def _directory(root: Path, entry: str, top: str = "") -> Path:
    path = root / "directory.toml"
    path.write_text(
        f'{top}[[agency]]\nkennung = "{AGENCY}"\nname = "Meldebehörde"\n'
        f'certificates = ["psw_02000000.crt"]\naccepts = ["meldung.anmeldung.0200"]\n{entry}',
        encoding="utf-8",
    )
    return path


def _load(root: Path, entry: str, top: str = "") -> Directory:
    return Directory.load(_directory(root, entry, top), root / "parties")


def _trust(root: Path) -> TrustStore:
    return TrustStore.from_dirs(root / "trust", root / "crl")


# the directory


def test_a_directory_that_seals_by_default_seals_an_amqp_agency(tmp_path: Path) -> None:
    pki = _pki(tmp_path)

    agency = _load(pki, 'encryption = ["psw_02000000.enc.crt"]\n', "sealed = true\n").get(AGENCY)

    assert agency is not None and agency.sealed
    assert [c.source for c in agency.encryption] == [str(pki / "parties/psw_02000000.enc.crt")]


def test_an_agency_s_own_sealed_wins_over_the_default(tmp_path: Path) -> None:
    pki = _pki(tmp_path)

    agency = _load(pki, "sealed = false\n", "sealed = true\n").get(AGENCY)

    assert agency is not None and not agency.sealed


def test_a_sealed_agency_without_an_encryption_certificate_is_refused_at_load(
    tmp_path: Path,
) -> None:
    pki = _pki(tmp_path)

    with pytest.raises(DirectoryError, match=r"agency\[0\] \(psw:02000000\).*no encryption cert"):
        _load(pki, "", "sealed = true\n")


def test_a_signing_certificate_is_refused_as_an_encryption_certificate(tmp_path: Path) -> None:
    pki = _pki(tmp_path)

    with pytest.raises(DirectoryError, match=r"no encryption certificate .*keyEncipherment"):
        _load(pki, 'encryption = ["psw_02000000.crt"]\nsealed = true\n')


def test_an_xta_agency_cannot_be_sealed(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    xta = 'endpoint = { kind = "xta" }\n'

    with pytest.raises(DirectoryError, match="an XTA agency cannot be sealed"):
        _load(pki, xta + "sealed = true\n")
    agency = _load(pki, xta, "sealed = true\n").get(AGENCY)
    assert agency is not None and not agency.sealed


def test_the_example_directory_seals_every_agency_that_receives_over_amqp(tmp_path: Path) -> None:
    example = EXAMPLES / "directory.toml"
    init_dev_pki(tmp_path, read_parties(example))  # a signing and an encryption key each

    directory = Directory.load(example, tmp_path / "parties")
    check_keys(directory, _trust(tmp_path), datetime.now(UTC))

    sealed = {a.kennung: a.sealed for a in directory if a.accepts or a.notify}
    assert sealed == {
        "psw:02000000": True,
        "psw:01060063": True,
        "gew:02000000": True,
        "bau:02000000": False,  # XTA
    }


# the key check at start and reload


def test_a_revoked_key_makes_the_directory_unusable_for_sealing(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    directory = _load(pki, 'encryption = ["psw_02000000.enc.crt"]\nsealed = true\n')
    now = datetime.now(UTC)
    check_keys(directory, _trust(pki), now)

    revoke(pki / "ca", pki / "crl", pki / "parties/psw_02000000.enc.crt")

    (problem,) = key_problems(directory, _trust(pki), now)
    assert problem.startswith(f"{AGENCY} is sealed but has no valid encryption key: ")
    assert "psw_02000000.enc.crt" in problem and "revoked" in problem
    with pytest.raises(SealingKeyError, match=f"{AGENCY} is sealed but has no valid .*revoked"):
        check_keys(directory, _trust(pki), now)


def test_a_key_valid_later_or_expired_is_no_key(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    directory = _load(pki, 'encryption = ["psw_02000000.enc.crt"]\nsealed = true\n')

    for at in (datetime.now(UTC) - timedelta(days=2), datetime.now(UTC) + timedelta(days=4000)):
        with pytest.raises(SealingKeyError, match="no valid encryption key"):
            check_keys(directory, _trust(pki), at)


def test_during_a_rotation_the_newest_valid_key_is_sealed_for(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    issue_encryption(pki / "ca", AGENCY, "Meldebehörde", pki)
    (old, _), (new, _) = encryption_paths(pki, AGENCY)
    directory = _load(pki, f'encryption = ["{old.name}", "{new.name}"]\nsealed = true\n')
    agency = directory.get(AGENCY)
    assert agency is not None
    sealer = Sealer(_trust(pki), KeyRing(), SealLimits())

    assert sealer.recipient_key(agency, datetime.now(UTC)).kid == RecipientKey.from_file(new).kid
    revoke(pki / "ca", pki / "crl", new)
    sealer = Sealer(_trust(pki), KeyRing(), SealLimits())
    assert sealer.recipient_key(agency, datetime.now(UTC)).kid == RecipientKey.from_file(old).kid


async def test_a_reload_that_leaves_a_sealed_agency_without_a_key_keeps_the_old_directory(
    tmp_path: Path,
) -> None:
    pki = _pki(tmp_path)
    path = _directory(pki, 'encryption = ["psw_02000000.enc.crt"]\nsealed = true\n')
    applied: list[Directory] = []

    async def apply(directory: Directory) -> None:
        check_keys(directory, _trust(pki), datetime.now(UTC))  # what the service does first
        applied.append(directory)

    watcher = DirectoryWatcher(path, pki / "parties", apply)
    assert await watcher.reload() is True
    revoke(pki / "ca", pki / "crl", pki / "parties/psw_02000000.enc.crt")

    assert await watcher.reload() is False
    assert len(applied) == 1 and watcher.failures == 1


# xbroker doctor


def _settings(root: Path, directory: Path) -> Path:
    path = root / "xbroker.toml"
    path.write_text(
        f'broker_kennung = "{BROKER}"\nbroker_name = "xbroker"\n'
        f'directory = "{directory}"\npki_dir = "{root}"\nstate_dir = "{root / "state"}"\n',
        encoding="utf-8",
    )
    return path


def test_doctor_fails_a_sealed_agency_whose_key_is_revoked_and_says_how_to_fix_it(
    tmp_path: Path,
) -> None:
    pki = _pki(tmp_path)
    path = _directory(pki, 'encryption = ["psw_02000000.enc.crt"]\nsealed = true\n')
    settings = load_settings(_settings(pki, path))
    directory = Directory.load(path, pki / "parties")
    now = datetime.now(UTC)

    (agency, broker) = check_sealing(settings, directory, now)
    assert agency.status is Status.OK and "copies sealed for key" in agency.detail
    assert broker.status is Status.WARN and "no encryption key" in broker.detail

    revoke(pki / "ca", pki / "crl", pki / "parties/psw_02000000.enc.crt")
    issue_encryption(pki / "ca", BROKER, "xbroker", pki)
    (agency, broker) = check_sealing(settings, directory, now)
    assert agency.status is Status.FAIL and "revoked" in agency.detail
    assert f"xbroker pki issue {AGENCY} NAME --encryption" in agency.fix
    assert broker.status is Status.OK and "broker opens submissions sealed for" in broker.detail
