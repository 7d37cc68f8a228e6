"""Specification of Signer: enveloped XML-DSig over the whole document."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree
from signxml.verifier import XMLVerifier

from signing import Signer, SigningError, TrustStore, Verifier, parse_untrusted
from signing.devpki import init_dev_pki, issue
from signing.keyfiles import party_paths

DS = "{http://www.w3.org/2000/09/xmldsig#}"
DOC = b'<m:msg xmlns:m="urn:test"><a>1</a></m:msg>'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pki_dir = tmp_path_factory.mktemp("pki")
    init_dev_pki(pki_dir, [("psw:02000000", "Portal")])
    issue(pki_dir / "ca", "rsa:1", "RSA party", pki_dir / "rsa", key_type="rsa")
    return pki_dir


@pytest.fixture(scope="module")
def ec_signer(pki: Path) -> Signer:
    cert, key = party_paths(pki, "psw:02000000")
    return Signer.from_files(key, cert)


@pytest.fixture(scope="module")
def rsa_signer(pki: Path) -> Signer:
    return Signer.from_files(pki / "rsa" / "rsa_1.key", pki / "rsa" / "rsa_1.crt")


def _signature(signed: bytes) -> etree._Element:
    root = parse_untrusted(signed)
    found = root.findall(f"{DS}Signature")
    assert len(found) == 1
    return found[0]


def test_signature_is_the_last_child_of_the_root(ec_signer: Signer) -> None:
    root = parse_untrusted(ec_signer.sign(DOC))
    assert root[-1].tag == f"{DS}Signature"
    assert root[0].tag == "a"


def test_one_reference_covers_the_whole_document(ec_signer: Signer) -> None:
    references = _signature(ec_signer.sign(DOC)).findall(f"{DS}SignedInfo/{DS}Reference")
    assert [r.get("URI") for r in references] == [""]


def test_reference_uses_enveloped_transform_and_exclusive_c14n(ec_signer: Signer) -> None:
    transforms = _signature(ec_signer.sign(DOC)).findall(f".//{DS}Reference/{DS}Transforms/*")
    assert [t.get("Algorithm") for t in transforms] == [
        "http://www.w3.org/2000/09/xmldsig#enveloped-signature",
        "http://www.w3.org/2001/10/xml-exc-c14n#",
    ]


def test_ecdsa_key_signs_with_ecdsa_sha256(ec_signer: Signer) -> None:
    method = _signature(ec_signer.sign(DOC)).find(f"{DS}SignedInfo/{DS}SignatureMethod")
    assert method is not None
    assert method.get("Algorithm") == "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"


def test_rsa_key_signs_with_rsa_sha256(rsa_signer: Signer) -> None:
    method = _signature(rsa_signer.sign(DOC)).find(f"{DS}SignedInfo/{DS}SignatureMethod")
    assert method is not None
    assert method.get("Algorithm") == "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"


def test_digest_is_sha256(ec_signer: Signer) -> None:
    digest = _signature(ec_signer.sign(DOC)).find(f".//{DS}DigestMethod")
    assert digest is not None
    assert digest.get("Algorithm") == "http://www.w3.org/2001/04/xmlenc#sha256"


def test_key_info_carries_the_signer_certificate(ec_signer: Signer) -> None:
    text = _signature(ec_signer.sign(DOC)).findtext(f"{DS}KeyInfo/{DS}X509Data/{DS}X509Certificate")
    assert text is not None
    cert = x509.load_der_x509_certificate(base64.b64decode("".join(text.split())))
    assert cert == ec_signer.certificate


def test_fingerprint_is_sha256_of_the_certificate_der(ec_signer: Signer) -> None:
    assert ec_signer.fingerprint == ec_signer.certificate.fingerprint(hashes.SHA256()).hex()


def test_an_element_can_be_signed_as_well_as_bytes(ec_signer: Signer, pki: Path) -> None:
    signed = ec_signer.sign(parse_untrusted(DOC))
    verifier = Verifier(TrustStore.from_dirs(pki / "trust", pki / "crl"))
    assert (
        verifier.verify(parse_untrusted(signed), at=datetime.now(UTC)).fingerprint
        == ec_signer.fingerprint
    )


def test_signing_leaves_the_given_element_unchanged(ec_signer: Signer) -> None:
    root = parse_untrusted(DOC)
    ec_signer.sign(root)
    assert etree.tostring(root) == DOC


def test_a_built_document_is_signed_in_place_and_verifies(ec_signer: Signer, pki: Path) -> None:
    root = etree.fromstring(DOC)

    signed = ec_signer.sign_built(root)

    assert root[-1].tag == f"{DS}Signature"  # handed over: no copy was made
    verifier = Verifier(TrustStore.from_dirs(pki / "trust", pki / "crl"))
    verified = verifier.verify(parse_untrusted(signed), at=datetime.now(UTC))
    assert verified.fingerprint == ec_signer.fingerprint


def test_an_element_inside_a_document_is_not_signed_in_place(ec_signer: Signer) -> None:
    child = parse_untrusted(DOC)[0]

    with pytest.raises(SigningError, match="in place"):
        ec_signer.sign_built(child)


def test_a_signature_the_document_carries_stays_as_content_the_new_one_covers(
    ec_signer: Signer, rsa_signer: Signer, pki: Path
) -> None:
    twice = ec_signer.sign(rsa_signer.sign(DOC))
    root = parse_untrusted(twice)
    assert [s.getparent() is root for s in root.iter(f"{DS}Signature")] == [True, True]
    verifier = Verifier(TrustStore.from_dirs(pki / "trust", pki / "crl"))
    verified = verifier.verify(root, at=datetime.now(UTC))
    assert verified.fingerprint == ec_signer.fingerprint
    assert len(verified.signed.findall(f"{DS}Signature")) == 1  # the inner one, as content


def test_a_signature_is_not_signed_as_a_message(ec_signer: Signer) -> None:
    signature = etree.tostring(_signature(ec_signer.sign(DOC)))
    with pytest.raises(SigningError, match="is a ds:Signature"):
        ec_signer.sign(signature)


def test_the_digest_leaves_comments_out_as_a_whole_document_reference_does(
    ec_signer: Signer, pki: Path
) -> None:
    signed = ec_signer.sign(b'<m:msg xmlns:m="urn:test"><a>1<!-- note -->0</a><!--x--></m:msg>')
    verifier = Verifier(TrustStore.from_dirs(pki / "trust", pki / "crl"))
    verified = verifier.verify(parse_untrusted(signed), at=datetime.now(UTC))
    assert verified.signed.findtext("a") == "10"
    assert verified.uncovered.comments == 2


def test_key_and_certificate_must_belong_together(pki: Path) -> None:
    cert, _ = party_paths(pki, "psw:02000000")
    with pytest.raises(SigningError, match="does not belong"):
        Signer.from_files(pki / "rsa" / "rsa_1.key", cert)


def test_missing_key_file_is_a_signing_error(pki: Path, tmp_path: Path) -> None:
    cert, _ = party_paths(pki, "psw:02000000")
    with pytest.raises(SigningError):
        Signer.from_files(tmp_path / "absent.key", cert)


@pytest.mark.parametrize("party", ["ec", "rsa"])
def test_signature_verifies_with_signxml(ec_signer: Signer, rsa_signer: Signer, party: str) -> None:
    signer = ec_signer if party == "ec" else rsa_signer
    result = XMLVerifier().verify(signer.sign(DOC), x509_cert=signer.certificate)
    assert not isinstance(result, list)
    assert result.signed_data == DOC


def test_signature_value_of_ecdsa_is_raw_r_and_s(ec_signer: Signer) -> None:
    value = _signature(ec_signer.sign(DOC)).findtext(f"{DS}SignatureValue")
    assert value is not None
    assert len(base64.b64decode(value)) == 64  # P-256: 32 bytes each


def test_element_with_inherited_namespaces_signs_as_its_own_document(ec_signer: Signer) -> None:
    outer = parse_untrusted(b'<o xmlns:m="urn:test"><m:msg><m:a>1</m:a></m:msg>tail</o>')
    signed = ec_signer.sign(outer[0])
    assert parse_untrusted(signed).tag == "{urn:test}msg"
    result = XMLVerifier().verify(signed, x509_cert=ec_signer.certificate)
    assert not isinstance(result, list)
    assert result.signed_xml is not None and result.signed_xml.findtext("{urn:test}a") == "1"
