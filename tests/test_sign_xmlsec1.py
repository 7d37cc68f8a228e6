"""Signer's output verifies with xmlsec1 for the bundled sample messages, RSA and ECDSA."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import xta_schemas
from signing import Signer
from signing.devpki import init_dev_pki, issue
from signing.keyfiles import party_paths

SAMPLES = sorted((Path(xta_schemas.__file__).parent / "bundled").glob("*/samples/*.xml"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pki_dir = tmp_path_factory.mktemp("pki")
    init_dev_pki(pki_dir, [("psw:02000000", "Portal")])
    return pki_dir


@pytest.fixture(scope="module")
def signers(pki: Path) -> dict[str, Signer]:
    ec_cert, ec_key = party_paths(pki, "psw:02000000")
    rsa_cert, rsa_key = issue(pki / "ca", "psw:02000000", "Portal", pki / "rsa", key_type="rsa")
    return {
        "ec": Signer.from_files(ec_key, ec_cert),
        "rsa": Signer.from_files(rsa_key, rsa_cert),
    }


def _xmlsec1_verify(
    xmlsec1: str, pki: Path, signed: bytes, work: Path
) -> subprocess.CompletedProcess[str]:
    path = work / "signed.xml"
    path.write_bytes(signed)
    return subprocess.run(
        [xmlsec1, "--verify", "--trusted-pem", str(pki / "ca" / "ca.crt"), str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_every_signed_sample_verifies_in_xmlsec1(
    xmlsec1: str, pki: Path, signers: dict[str, Signer], key: str, tmp_path: Path
) -> None:
    assert SAMPLES
    for sample in SAMPLES:
        result = _xmlsec1_verify(xmlsec1, pki, signers[key].sign(sample.read_bytes()), tmp_path)
        assert result.returncode == 0, f"{sample}: {result.stderr}"


@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_a_tampered_signed_sample_fails_in_xmlsec1(
    xmlsec1: str, pki: Path, signers: dict[str, Signer], key: str, tmp_path: Path
) -> None:
    signed = signers[key].sign(SAMPLES[0].read_bytes())
    tampered = signed.replace(b"<code>", b"<code>X", 1)
    assert tampered != signed
    assert _xmlsec1_verify(xmlsec1, pki, tampered, tmp_path).returncode != 0
