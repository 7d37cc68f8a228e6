"""Interoperability with xmlsec1, an independent XML-DSig implementation.

A document signed by xmlsec1 from a template verifies with our Verifier; a document
signed by our Signer verifies with ``xmlsec1 --verify``; a tampered one fails in both.
"""

from __future__ import annotations

import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.errors import Reason
from signing import SignatureError, Signer, TrustStore, Verifier, parse_untrusted
from signing.devpki import init_dev_pki, issue
from signing.keyfiles import party_paths

DOC = b'<m:msg xmlns:m="urn:test"><a>1</a></m:msg>'
METHODS = {
    "rsa": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "ec": "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
}
TEMPLATE = """<?xml version="1.0" encoding="UTF-8"?>
<m:msg xmlns:m="urn:test"><a>1</a><Signature xmlns="http://www.w3.org/2000/09/xmldsig#">
<SignedInfo>
<CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
<SignatureMethod Algorithm="{method}"/>
<Reference URI="">
<Transforms>
<Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
<Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
</Transforms>
<DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
<DigestValue/>
</Reference>
</SignedInfo>
<SignatureValue/>
<KeyInfo><X509Data><X509Certificate/></X509Data></KeyInfo>
</Signature></m:msg>
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pki_dir = tmp_path_factory.mktemp("pki")
    init_dev_pki(pki_dir, [("psw:02000000", "Portal")])
    cert, key = party_paths(pki_dir, "psw:02000000")
    (pki_dir / "ec").mkdir()
    shutil.copy(cert, pki_dir / "ec" / "party.crt")
    shutil.copy(key, pki_dir / "ec" / "party.key")
    cert, key = issue(pki_dir / "ca", "psw:02000000", "Portal", pki_dir / "rsa", key_type="rsa")
    cert.rename(pki_dir / "rsa" / "party.crt")
    key.rename(pki_dir / "rsa" / "party.key")
    return pki_dir


@pytest.fixture(scope="module")
def verifier(pki: Path) -> Verifier:
    return Verifier(TrustStore.from_dirs(pki / "trust", pki / "crl"))


def _xmlsec1(xmlsec1: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [xmlsec1, *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )


def _xmlsec1_sign(xmlsec1: str, pki: Path, key_type: str, work: Path) -> bytes:
    template = work / "template.xml"
    template.write_text(TEMPLATE.format(method=METHODS[key_type]))
    out = work / "signed.xml"
    party = pki / key_type
    result = _xmlsec1(
        xmlsec1,
        "--sign",
        "--privkey-pem",
        f"{party / 'party.key'},{party / 'party.crt'}",
        "--output",
        out,
        template,
    )
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


def _xmlsec1_verify(
    xmlsec1: str, pki: Path, signed: bytes, work: Path
) -> subprocess.CompletedProcess[str]:
    path = work / "to-verify.xml"
    path.write_bytes(signed)
    return _xmlsec1(xmlsec1, "--verify", "--trusted-pem", pki / "ca" / "ca.crt", path)


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_document_signed_by_xmlsec1_verifies(
    xmlsec1: str, pki: Path, verifier: Verifier, key_type: str, tmp_path: Path
) -> None:
    signed = _xmlsec1_sign(xmlsec1, pki, key_type, tmp_path)
    assert (
        verifier.verify(parse_untrusted(signed), at=datetime.now(UTC)).signed.findtext("a") == "1"
    )


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_tampered_xmlsec1_document_fails_in_verifier(
    xmlsec1: str, pki: Path, verifier: Verifier, key_type: str, tmp_path: Path
) -> None:
    signed = _xmlsec1_sign(xmlsec1, pki, key_type, tmp_path).replace(b"<a>1</a>", b"<a>2</a>")
    with pytest.raises(SignatureError) as caught:
        verifier.verify(parse_untrusted(signed), at=datetime.now(UTC))
    assert caught.value.reason is Reason.DIGEST_MISMATCH


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_document_signed_by_signer_verifies_in_xmlsec1(
    xmlsec1: str, pki: Path, key_type: str, tmp_path: Path
) -> None:
    party = pki / key_type
    signed = Signer.from_files(party / "party.key", party / "party.crt").sign(DOC)
    result = _xmlsec1_verify(xmlsec1, pki, signed, tmp_path)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("key_type", ["rsa", "ec"])
def test_tampered_signer_document_fails_in_xmlsec1(
    xmlsec1: str, pki: Path, key_type: str, tmp_path: Path
) -> None:
    party = pki / key_type
    signed = Signer.from_files(party / "party.key", party / "party.crt").sign(DOC)
    result = _xmlsec1_verify(xmlsec1, pki, signed.replace(b"<a>1</a>", b"<a>2</a>"), tmp_path)
    assert result.returncode != 0


def test_signer_document_from_another_ca_fails_in_xmlsec1(
    xmlsec1: str, pki: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other-pki")
    init_dev_pki(other, [("psw:02000000", "Impostor")])
    cert, key = party_paths(other, "psw:02000000")
    result = _xmlsec1_verify(xmlsec1, pki, Signer.from_files(key, cert).sign(DOC), tmp_path)
    assert result.returncode != 0
