"""A development PKI, a signer and a verifier for the attack corpora."""

from __future__ import annotations

from pathlib import Path

import pytest

from signing import Signer, TrustStore, Verifier
from signing.devpki import init_dev_pki
from signing.keyfiles import party_paths


@pytest.fixture(scope="package")
def attack_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pki_dir = tmp_path_factory.mktemp("attack-pki")
    init_dev_pki(pki_dir, [("psw:02000000", "Portal")])
    return pki_dir


@pytest.fixture(scope="package")
def signer(attack_pki: Path) -> Signer:
    cert, key = party_paths(attack_pki, "psw:02000000")
    return Signer.from_files(key, cert)


@pytest.fixture(scope="package")
def verifier(attack_pki: Path) -> Verifier:
    return Verifier(TrustStore.from_dirs(attack_pki / "trust", attack_pki / "crl"))
