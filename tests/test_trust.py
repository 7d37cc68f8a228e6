"""Specification of TrustStore: chains, key usage, revocation, CRL freshness, rotation."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from broker.errors import Reason
from signing import (
    CrlRule,
    RevocationStatus,
    SignatureError,
    Signer,
    SigningError,
    TrustStore,
    Verifier,
    load_certificate,
    parse_untrusted,
)
from signing.crl import CrlFolder
from signing.devpki import create_ca, init_dev_pki, issue, revoke
from signing.keyfiles import party_paths

DOC = b'<m:msg xmlns:m="urn:test"><a>1</a></m:msg>'


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    init_dev_pki(tmp_path, [("psw:02000000", "Portal")])
    return tmp_path


def _party(pki: Path) -> x509.Certificate:
    return load_certificate(party_paths(pki, "psw:02000000")[0])


def _custom_leaf(
    pki: Path, key_usage: x509.KeyUsage, *, ca: bool = False, eku: bool = False
) -> x509.Certificate:
    ca_cert = load_certificate(pki / "ca" / "ca.crt")
    ca_key = serialization.load_pem_private_key((pki / "ca" / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "psw:custom")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(key_usage, critical=True)
    )
    if eku:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False
        )
    return builder.sign(ca_key, hashes.SHA256())


def _usage(digital_signature: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=not digital_signature,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def test_leaf_with_digital_signature_and_no_eku_is_trusted(pki: Path) -> None:
    leaf = _party(pki)
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    trusted = TrustStore.from_dirs(pki / "trust", pki / "crl").validate(leaf, at=datetime.now(UTC))
    assert trusted.chain[0] == leaf
    assert trusted.chain[-1] == load_certificate(pki / "ca" / "ca.crt")
    assert trusted.revocation is RevocationStatus.GOOD


def test_leaf_with_a_non_tls_eku_is_trusted(pki: Path) -> None:
    leaf = _custom_leaf(pki, _usage(True), eku=True)
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")
    assert store.validate(leaf, at=datetime.now(UTC)).chain[0] == leaf


def test_leaf_without_digital_signature_usage_is_untrusted(pki: Path) -> None:
    leaf = _custom_leaf(pki, _usage(False))
    with pytest.raises(SignatureError) as caught:
        TrustStore.from_dirs(pki / "trust", pki / "crl").validate(leaf, at=datetime.now(UTC))
    assert caught.value.reason is Reason.CERTIFICATE_UNTRUSTED


def test_ca_certificate_cannot_be_a_signer(pki: Path) -> None:
    leaf = _custom_leaf(pki, _usage(True), ca=True)
    with pytest.raises(SignatureError) as caught:
        TrustStore.from_dirs(pki / "trust", pki / "crl").validate(leaf, at=datetime.now(UTC))
    assert caught.value.reason is Reason.CERTIFICATE_UNTRUSTED


def test_certificate_of_another_ca_is_untrusted(
    pki: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other")
    create_ca(other / "ca", "xbroker development CA")  # same name, different key
    cert, _ = issue(other / "ca", "psw:02000000", "Impostor", other, key_type="ec")
    with pytest.raises(SignatureError) as caught:
        TrustStore.from_dirs(pki / "trust", pki / "crl").validate(
            load_certificate(cert), at=datetime.now(UTC)
        )
    assert caught.value.reason is Reason.CERTIFICATE_UNTRUSTED


def test_two_certificates_of_one_kennung_both_verify(pki: Path) -> None:
    old_cert, old_key = party_paths(pki, "psw:02000000")
    new_cert, new_key = issue(pki / "ca", "psw:02000000", "Portal", pki / "rotated", key_type="ec")
    verifier = Verifier(TrustStore.from_dirs(pki / "trust", pki / "crl"))
    old = verifier.verify(
        parse_untrusted(Signer.from_files(old_key, old_cert).sign(DOC)), at=datetime.now(UTC)
    )
    new = verifier.verify(
        parse_untrusted(Signer.from_files(new_key, new_cert).sign(DOC)), at=datetime.now(UTC)
    )
    assert old.subject_kennung == new.subject_kennung == "psw:02000000"
    assert old.fingerprint != new.fingerprint


def test_revocation_after_a_cached_validation_takes_effect_on_reload(pki: Path) -> None:
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")
    leaf = _party(pki)
    store.validate(leaf, at=datetime.now(UTC))
    revoke(pki / "ca", pki / "crl", leaf)
    store.reload_crls()
    with pytest.raises(SignatureError) as caught:
        store.validate(leaf, at=datetime.now(UTC))
    assert caught.value.reason is Reason.CERTIFICATE_REVOKED


def test_validation_reads_the_crl_snapshot_not_the_folder(pki: Path) -> None:
    store = TrustStore([load_certificate(pki / "ca" / "ca.crt")], CrlFolder(pki / "crl", 0.0))
    leaf = _party(pki)
    revoke(pki / "ca", pki / "crl", leaf)
    assert store.validate(leaf, at=datetime.now(UTC)).revocation is RevocationStatus.GOOD


def test_a_changed_crl_folder_counts_once_refreshed(pki: Path) -> None:
    store = TrustStore([load_certificate(pki / "ca" / "ca.crt")], CrlFolder(pki / "crl", 0.0))
    leaf = _party(pki)
    store.validate(leaf, at=datetime.now(UTC))
    revoke(pki / "ca", pki / "crl", leaf)

    assert store.refresh_crls()

    with pytest.raises(SignatureError) as caught:
        store.validate(leaf, at=datetime.now(UTC))
    assert caught.value.reason is Reason.CERTIFICATE_REVOKED


def test_an_unchanged_crl_folder_keeps_its_snapshot(pki: Path) -> None:
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")
    before = store.crls

    assert not store.refresh_crls()
    assert store.crls is before


def test_the_crl_folder_is_looked_at_no_more_often_than_its_refresh_period(pki: Path) -> None:
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")  # refresh_seconds: 1.0
    leaf = _party(pki)
    store.refresh_crls(now_monotonic=100.0)
    revoke(pki / "ca", pki / "crl", leaf)

    assert not store.refresh_crls(now_monotonic=100.5)
    assert store.refresh_crls(now_monotonic=101.0)


def test_crl_not_signed_by_the_issuer_is_ignored(
    pki: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("forger")
    create_ca(other / "ca", "xbroker development CA")  # same issuer name as ours
    leaf = _party(pki)
    forged = revoke(other / "ca", other / "crl", leaf)
    shutil.copy(forged, pki / "crl" / "forged.crl")
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")
    assert store.validate(leaf, at=datetime.now(UTC)).revocation is RevocationStatus.GOOD


def test_missing_crl_is_untrusted_by_default(pki: Path) -> None:
    shutil.rmtree(pki / "crl")
    with pytest.raises(SignatureError) as caught:
        TrustStore.from_dirs(pki / "trust", pki / "crl").validate(_party(pki), at=datetime.now(UTC))
    assert caught.value.reason is Reason.CERTIFICATE_UNTRUSTED
    assert "CRL" in caught.value.detail


def test_missing_crl_may_be_accepted_by_policy(pki: Path) -> None:
    shutil.rmtree(pki / "crl")
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")
    trusted = store.validate(_party(pki), missing_crl=CrlRule.ACCEPT, at=datetime.now(UTC))
    assert trusted.revocation is RevocationStatus.NO_CRL


def test_stale_crl_is_untrusted_by_default(pki: Path) -> None:
    later = datetime.now(UTC) + timedelta(days=60)
    with pytest.raises(SignatureError) as caught:
        TrustStore.from_dirs(pki / "trust", pki / "crl").validate(_party(pki), at=later)
    assert caught.value.reason is Reason.CERTIFICATE_UNTRUSTED


def test_stale_crl_may_be_accepted_by_policy(pki: Path) -> None:
    later = datetime.now(UTC) + timedelta(days=60)
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")
    trusted = store.validate(_party(pki), at=later, stale_crl=CrlRule.ACCEPT)
    assert trusted.revocation is RevocationStatus.STALE


def test_without_a_crl_folder_revocation_is_not_checked(pki: Path) -> None:
    trusted = TrustStore.from_dirs(pki / "trust").validate(_party(pki), at=datetime.now(UTC))
    assert trusted.revocation is RevocationStatus.NOT_CHECKED


def test_cached_chain_is_not_reused_outside_its_validity(pki: Path) -> None:
    store = TrustStore.from_dirs(pki / "trust")
    leaf = _party(pki)
    store.validate(leaf, at=datetime.now(UTC))
    with pytest.raises(SignatureError) as caught:
        store.validate(leaf, at=leaf.not_valid_after_utc + timedelta(seconds=1))
    assert caught.value.reason is Reason.CERTIFICATE_EXPIRED


def test_several_ca_certificates_in_one_pem_file_are_all_anchors(
    pki: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("second-ca")
    create_ca(other / "ca", "Second CA")
    cert, _ = issue(other / "ca", "dst:01", "Amt", other, key_type="ec")
    bundle = tmp_path_factory.mktemp("bundle")
    (bundle / "cas.pem").write_bytes(
        (pki / "ca" / "ca.crt").read_bytes() + (other / "ca" / "ca.crt").read_bytes()
    )
    store = TrustStore.from_dirs(bundle)
    assert len(store.anchors) == 2
    trusted = store.validate(load_certificate(cert), at=datetime.now(UTC))
    assert trusted.chain[0] == load_certificate(cert)


def test_trust_folder_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SigningError):
        TrustStore.from_dirs(tmp_path / "absent")


def test_empty_trust_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SigningError):
        TrustStore.from_dirs(tmp_path)


def test_cached_good_status_is_not_reused_once_the_crl_is_past_next_update(pki: Path) -> None:
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")
    leaf = _party(pki)
    assert store.validate(leaf, at=datetime.now(UTC)).revocation is RevocationStatus.GOOD
    with pytest.raises(SignatureError) as caught:
        store.validate(leaf, at=datetime.now(UTC) + timedelta(days=60))
    assert caught.value.reason is Reason.CERTIFICATE_UNTRUSTED


def test_revocation_counts_for_a_verifier_that_verified_the_signer_before(pki: Path) -> None:
    cert, key = party_paths(pki, "psw:02000000")
    store = TrustStore.from_dirs(pki / "trust", pki / "crl")
    verifier = Verifier(store)
    signed = Signer.from_files(key, cert).sign(DOC)
    verifier.verify(parse_untrusted(signed), at=datetime.now(UTC))
    revoke(pki / "ca", pki / "crl", load_certificate(cert))
    store.reload_crls()
    with pytest.raises(SignatureError) as caught:
        verifier.verify(parse_untrusted(signed), at=datetime.now(UTC))
    assert caught.value.reason is Reason.CERTIFICATE_REVOKED
