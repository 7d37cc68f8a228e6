"""Specification of Verifier: what it returns, and which reject code each defect gets."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.signer import XMLSigner

from broker.errors import Reason
from signing import (
    SignatureError,
    Signer,
    TrustStore,
    VerificationPolicy,
    Verifier,
    parse_untrusted,
)
from signing.devpki import create_ca, init_dev_pki, issue, revoke
from signing.keyfiles import party_paths
from tests.attacks.generators import certificate_flood, inclusive_c14n, signed_info_flood
from tests.raise_sites import reasons_raised

DS = "{http://www.w3.org/2000/09/xmldsig#}"
DOC = b'<m:msg xmlns:m="urn:test"><a>1</a></m:msg>'


@dataclass(frozen=True)
class Parties:
    pki: Path
    ec: Signer
    rsa: Signer
    revoked: Signer
    foreign: Signer
    verifier: Verifier


@pytest.fixture(scope="module")
def parties(tmp_path_factory: pytest.TempPathFactory) -> Parties:
    pki = tmp_path_factory.mktemp("pki")
    init_dev_pki(pki, [("psw:02000000", "Portal"), ("dst:revoked", "Revoked")])
    rsa_cert, rsa_key = issue(pki / "ca", "dst:rsa", "RSA", pki / "rsa", key_type="rsa")
    revoked_cert, revoked_key = party_paths(pki, "dst:revoked")
    revoke(pki / "ca", pki / "crl", revoked_cert)
    foreign = tmp_path_factory.mktemp("foreign")
    create_ca(foreign / "ca", "Foreign CA")
    f_cert, f_key = issue(foreign / "ca", "psw:02000000", "Impostor", foreign, key_type="ec")
    ec_cert, ec_key = party_paths(pki, "psw:02000000")
    return Parties(
        pki=pki,
        ec=Signer.from_files(ec_key, ec_cert),
        rsa=Signer.from_files(rsa_key, rsa_cert),
        revoked=Signer.from_files(revoked_key, revoked_cert),
        foreign=Signer.from_files(f_key, f_cert),
        verifier=Verifier(TrustStore.from_dirs(pki / "trust", pki / "crl")),
    )


def test_rsa_signature_verifies(parties: Parties) -> None:
    result = parties.verifier.verify(parse_untrusted(parties.rsa.sign(DOC)), at=datetime.now(UTC))
    assert result.fingerprint == parties.rsa.fingerprint


def test_ecdsa_signature_verifies(parties: Parties) -> None:
    result = parties.verifier.verify(parse_untrusted(parties.ec.sign(DOC)), at=datetime.now(UTC))
    assert result.fingerprint == parties.ec.fingerprint


def test_signed_data_is_the_document_without_its_signature(parties: Parties) -> None:
    result = parties.verifier.verify(parse_untrusted(parties.ec.sign(DOC)), at=datetime.now(UTC))
    assert etree.tostring(result.signed) == DOC


def test_result_names_the_signer_certificate_and_kennung(parties: Parties) -> None:
    result = parties.verifier.verify(parse_untrusted(parties.ec.sign(DOC)), at=datetime.now(UTC))
    assert result.certificate == parties.ec.certificate
    assert result.subject_kennung == "psw:02000000"


def test_verification_leaves_the_input_tree_unchanged(parties: Parties) -> None:
    signed = parties.ec.sign(DOC)
    root = parse_untrusted(signed)
    before = etree.tostring(root)
    parties.verifier.verify(root, at=datetime.now(UTC))
    assert etree.tostring(root) == before


def test_a_signed_tree_parsed_later_outlives_the_received_one(parties: Parties) -> None:
    # The pipeline drops the received tree before it reads the signed one.
    doc = b'<?xml version="1.0"?>\n\n<m:msg xmlns:m="urn:test">\n  <a>1</a>\n  <b>2</b>\n</m:msg>'
    root = parse_untrusted(parties.ec.sign(doc))
    line_of_b = root.find("b").sourceline  # type: ignore[union-attr]
    result = parties.verifier.verify(root, at=datetime.now(UTC), parse_signed=False)
    del root

    signed = result.signed

    assert etree.tostring(signed) == result.signed_data
    assert signed.find("b").sourceline == line_of_b > 2  # type: ignore[union-attr]
    assert result.signed is signed


def test_pretty_printed_document_verifies(parties: Parties) -> None:
    doc = b'<m:msg xmlns:m="urn:test">\n  <a>1</a>\n  <b>zwei</b>\n</m:msg>'
    result = parties.verifier.verify(parse_untrusted(parties.ec.sign(doc)), at=datetime.now(UTC))
    assert result.signed.findtext("b") == "zwei"


# --- the reject code table: each input yields exactly its code ---------------------------


def _tamper(signed: bytes, old: bytes, new: bytes) -> bytes:
    assert old in signed
    return signed.replace(old, new, 1)


def _flip_signature_value(signed: bytes) -> bytes:
    root = parse_untrusted(signed)
    value = root.find(f"{DS}Signature/{DS}SignatureValue")
    assert value is not None and value.text is not None
    text = value.text.strip()
    value.text = ("B" if text[0] == "A" else "A") + text[1:]
    return etree.tostring(root)


def _sign_with_sha224_digest(p: Parties) -> bytes:
    cert, key = party_paths(p.pki, "psw:02000000")
    signer = XMLSigner(
        signature_algorithm=SignatureMethod.ECDSA_SHA256,
        digest_algorithm=DigestAlgorithm.SHA224,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    root = signer.sign(parse_untrusted(DOC), key=key.read_bytes(), cert=cert.read_text())
    return etree.tostring(root)


def _second_signature(signed: bytes) -> bytes:
    root = parse_untrusted(signed)
    root.append(parse_untrusted(etree.tostring(root[-1])))
    return etree.tostring(root)


def _signature_in_content(signed: bytes) -> bytes:
    root = parse_untrusted(signed)
    root[0].append(root[-1])
    return etree.tostring(root)


CASES: dict[str, tuple[Reason, Callable[[Parties], bytes]]] = {
    "unsigned document": (Reason.SIGNATURE_MISSING, lambda p: DOC),
    "signature value altered": (
        Reason.SIGNATURE_INVALID,
        lambda p: _flip_signature_value(p.ec.sign(DOC)),
    ),
    "content altered after signing": (
        Reason.DIGEST_MISMATCH,
        lambda p: _tamper(p.ec.sign(DOC), b"<a>1</a>", b"<a>2</a>"),
    ),
    "SHA-1 signature method": (
        Reason.ALGORITHM_NOT_ALLOWED,
        lambda p: _tamper(
            p.rsa.sign(DOC),
            b"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            b"http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        ),
    ),
    "SHA-224 digest": (Reason.ALGORITHM_NOT_ALLOWED, _sign_with_sha224_digest),
    "certificate from a foreign CA": (Reason.CERTIFICATE_UNTRUSTED, lambda p: p.foreign.sign(DOC)),
    "revoked certificate": (Reason.CERTIFICATE_REVOKED, lambda p: p.revoked.sign(DOC)),
    # The copy, last at the root, is the one verified; its digest covers the first.
    "second signature": (Reason.DIGEST_MISMATCH, lambda p: _second_signature(p.ec.sign(DOC))),
    "signature moved into content": (
        Reason.SIGNATURE_WRAPPING,
        lambda p: _signature_in_content(p.ec.sign(DOC)),
    ),
    "inclusive canonicalization": (
        Reason.ALGORITHM_NOT_ALLOWED,
        lambda p: inclusive_c14n(p.ec.sign(DOC)),
    ),
    "reference without a canonicalization (implies inclusive c14n)": (
        Reason.ALGORITHM_NOT_ALLOWED,
        lambda p: _tamper(
            p.ec.sign(DOC),
            b'<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>',
            b"",
        ),
    ),
    "nine certificates in KeyInfo": (
        Reason.TOO_MANY_CERTIFICATES,
        lambda p: certificate_flood(p.ec.sign(DOC), 8),
    ),
    "SignedInfo of 20 KB": (
        Reason.SIGNED_INFO_TOO_LARGE,
        lambda p: signed_info_flood(p.ec.sign(DOC), 20_000),
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_defect_yields_exactly_its_code(parties: Parties, name: str) -> None:
    reason, make = CASES[name]
    with pytest.raises(SignatureError) as caught:
        parties.verifier.verify(parse_untrusted(make(parties)), at=datetime.now(UTC))
    assert caught.value.reason is reason, caught.value.detail


def test_expired_certificate_yields_certificate_expired(parties: Parties) -> None:
    later = parties.ec.certificate.not_valid_after_utc + timedelta(days=1)
    with pytest.raises(SignatureError) as caught:
        parties.verifier.verify(parse_untrusted(parties.ec.sign(DOC)), at=later)
    assert caught.value.reason is Reason.CERTIFICATE_EXPIRED


def test_not_yet_valid_certificate_yields_certificate_expired(parties: Parties) -> None:
    earlier = parties.ec.certificate.not_valid_before_utc - timedelta(seconds=1)
    with pytest.raises(SignatureError) as caught:
        parties.verifier.verify(parse_untrusted(parties.ec.sign(DOC)), at=earlier)
    assert caught.value.reason is Reason.CERTIFICATE_EXPIRED


def test_the_table_covers_every_reason_a_signature_error_is_raised_with() -> None:
    covered = {reason for reason, _ in CASES.values()} | {Reason.CERTIFICATE_EXPIRED}
    assert covered == reasons_raised("signing", "SignatureError")


def test_valid_input_passes_every_check_in_the_table(parties: Parties) -> None:
    assert parties.verifier.verify(parse_untrusted(parties.ec.sign(DOC)), at=datetime.now(UTC))


def test_rsa_key_shorter_than_policy_minimum_is_not_allowed(parties: Parties) -> None:
    policy = VerificationPolicy(min_rsa_bits=4096)
    with pytest.raises(SignatureError) as caught:
        Verifier(parties.verifier.trust, policy).verify(
            parse_untrusted(parties.rsa.sign(DOC)), at=datetime.now(UTC)
        )
    assert caught.value.reason is Reason.ALGORITHM_NOT_ALLOWED
    assert isinstance(parties.rsa.certificate.public_key(), rsa.RSAPublicKey)


def test_signature_without_certificate_in_key_info_is_invalid(parties: Parties) -> None:
    root = parse_untrusted(parties.ec.sign(DOC))
    key_info = root.find(f"{DS}Signature/{DS}KeyInfo")
    assert key_info is not None
    key_info.getparent().remove(key_info)  # type: ignore[union-attr]
    with pytest.raises(SignatureError) as caught:
        parties.verifier.verify(root, at=datetime.now(UTC))
    assert caught.value.reason is Reason.SIGNATURE_INVALID


@pytest.fixture
def zone_east_of_utc() -> Iterator[None]:
    """A local zone five hours east of UTC, where a naive local time is five hours back."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "XBT-5"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()


@pytest.mark.usefixtures("zone_east_of_utc")
def test_naive_verification_time_is_taken_as_utc(parties: Parties) -> None:
    expiry = parties.ec.certificate.not_valid_after_utc
    naive_after_expiry = (expiry + timedelta(minutes=1)).replace(tzinfo=None)
    with pytest.raises(SignatureError) as caught:
        parties.verifier.verify(parse_untrusted(parties.ec.sign(DOC)), at=naive_after_expiry)
    assert caught.value.reason is Reason.CERTIFICATE_EXPIRED
