"""Signer's output verifies with xmlsec1 for the bundled sample messages, RSA and ECDSA,
and for real messages of published releases as the broker delivers them: with a
signature of their own (xmlsec1 told which signature is the message's, as
docs/security.md says) and without what no signature covers."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import xta_schemas
from signing import Signer, parse_untrusted
from signing.devpki import init_dev_pki, issue
from signing.keyfiles import party_paths
from signing.uncovered import covered_only
from tests.releases_support import releases_root

# The message's signature: the last ds:Signature among the root element's children.
LAST_AT_ROOT = (
    "/*/*[local-name()='Signature' and namespace-uri()='http://www.w3.org/2000/09/xmldsig#']"
    "[last()]"
)
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
    xmlsec1: str, pki: Path, signed: bytes, work: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    path = work / "signed.xml"
    path.write_bytes(signed)
    return subprocess.run(
        [xmlsec1, "--verify", "--trusted-pem", str(pki / "ca" / "ca.crt"), *options, str(path)],
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


def test_a_message_with_a_signature_of_its_own_verifies_at_the_last_signature(
    xmlsec1: str, pki: Path, signers: dict[str, Signer], tmp_path: Path
) -> None:
    instance = (
        releases_root()
        / "xwasser-1.0.0"
        / "instances"
        / "olb_report_signature_builder_test_result.xml"
    )
    signed = signers["ec"].sign(instance.read_bytes())
    assert (
        len(parse_untrusted(signed).findall("{http://www.w3.org/2000/09/xmldsig#}Signature")) == 2
    )
    result = _xmlsec1_verify(xmlsec1, pki, signed, tmp_path, "--node-xpath", LAST_AT_ROOT)
    assert result.returncode == 0, result.stderr
    # The signature of its own is covered content: changing it breaks the message's.
    tampered = signed.replace(b"<ds:KeyName/>", b"<ds:KeyName>x</ds:KeyName>", 1)
    assert tampered != signed
    failed = _xmlsec1_verify(xmlsec1, pki, tampered, tmp_path, "--node-xpath", LAST_AT_ROOT)
    assert failed.returncode != 0


def test_a_message_delivered_without_its_comments_verifies(
    xmlsec1: str, pki: Path, signers: dict[str, Signer], tmp_path: Path
) -> None:
    instances = releases_root() / "xdomea-3.0.0" / "instances"
    [commented] = instances.glob("9fde4e7a-*_Aussonderung.Aussonderung.0503.xml")
    signed = signers["rsa"].sign(commented.read_bytes())
    delivered = covered_only(parse_untrusted(signed))
    assert b"<!--" in signed and b"<!--" not in delivered
    result = _xmlsec1_verify(xmlsec1, pki, delivered, tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_processing_instruction_outside_the_root_is_signed_for_xmlsec1_and_left_out(
    xmlsec1: str, pki: Path, signers: dict[str, Signer], tmp_path: Path
) -> None:
    # XML-DSig's URI="" takes every node but comments, so xmlsec1 digests an instruction
    # before the root; the broker's signature covers the root element, and delivers that.
    signed = signers["ec"].sign(SAMPLES[0].read_bytes())
    with_instruction = signed.replace(b"?>", b"?><?route to=elsewhere?>", 1)
    assert _xmlsec1_verify(xmlsec1, pki, with_instruction, tmp_path).returncode != 0
    delivered = covered_only(parse_untrusted(with_instruction))
    assert b"<?route" not in delivered
    result = _xmlsec1_verify(xmlsec1, pki, delivered, tmp_path)
    assert result.returncode == 0, result.stderr
