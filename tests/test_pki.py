"""Specification of the development PKI."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from signing import PkiError, load_certificate, subject_kennung
from signing.devpki import create_ca, init_dev_pki, issue, list_certificates, revoke
from signing.keyfiles import file_id, party_paths

PARTIES = [("psw:02000000", "Portal"), ("dst:09162000", "Meldebehörde München")]


def test_init_creates_the_documented_layout(tmp_path: Path) -> None:
    init_dev_pki(tmp_path, PARTIES)
    assert (tmp_path / "ca" / "ca.crt").is_file()
    assert (tmp_path / "ca" / "ca.key").is_file()
    assert [p.name for p in (tmp_path / "trust").iterdir()] == ["xbroker-dev-ca.crt"]
    assert [p.suffix for p in (tmp_path / "crl").iterdir()] == [".crl"]
    assert sorted(p.name for p in (tmp_path / "parties").iterdir()) == [
        "dst_09162000.crt",
        "dst_09162000.enc.crt",
        "dst_09162000.enc.key",
        "dst_09162000.key",
        "psw_02000000.crt",
        "psw_02000000.enc.crt",
        "psw_02000000.enc.key",
        "psw_02000000.key",
    ]


def test_init_is_idempotent(tmp_path: Path) -> None:
    init_dev_pki(tmp_path, PARTIES)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    init_dev_pki(tmp_path, PARTIES)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_init_adds_missing_parties_and_keeps_the_others(tmp_path: Path) -> None:
    init_dev_pki(tmp_path, PARTIES[:1])
    first = party_paths(tmp_path, "psw:02000000")[0].read_bytes()
    init_dev_pki(tmp_path, PARTIES)
    assert party_paths(tmp_path, "psw:02000000")[0].read_bytes() == first
    assert party_paths(tmp_path, "dst:09162000")[0].is_file()


def test_private_keys_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    init_dev_pki(tmp_path, PARTIES)
    for key in [tmp_path / "ca" / "ca.key", *(tmp_path / "parties").glob("*.key")]:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


def test_party_paths_replace_the_colon(tmp_path: Path) -> None:
    assert party_paths(tmp_path, "psw:02000000") == (
        tmp_path / "parties" / "psw_02000000.crt",
        tmp_path / "parties" / "psw_02000000.key",
    )


def test_a_kennung_without_prefix_is_refused() -> None:
    with pytest.raises(PkiError):
        file_id("02000000")


def test_issued_certificate_is_for_signing_only(tmp_path: Path) -> None:
    create_ca(tmp_path / "ca", "Test CA")
    cert_path, _ = issue(tmp_path / "ca", "psw:02000000", "Portal", tmp_path / "out")
    cert = load_certificate(cert_path)
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert constraints.critical and not constraints.value.ca
    assert usage.digital_signature and usage.content_commitment
    assert not usage.key_cert_sign


def test_issued_certificate_names_the_kennung(tmp_path: Path) -> None:
    create_ca(tmp_path / "ca", "Test CA")
    cert_path, _ = issue(tmp_path / "ca", "dst:09162000", "Amt", tmp_path / "out", key_type="ec")
    assert subject_kennung(load_certificate(cert_path)) == "dst:09162000"


def test_key_type_selects_rsa_3072_or_ecdsa_p256(tmp_path: Path) -> None:
    create_ca(tmp_path / "ca", "Test CA")
    rsa_cert, _ = issue(tmp_path / "ca", "a:1", "A", tmp_path / "rsa", key_type="rsa")
    ec_cert, _ = issue(tmp_path / "ca", "a:1", "A", tmp_path / "ec", key_type="ec")
    rsa_key = load_certificate(rsa_cert).public_key()
    ec_key = load_certificate(ec_cert).public_key()
    assert isinstance(rsa_key, rsa.RSAPublicKey) and rsa_key.key_size == 3072
    assert isinstance(ec_key, ec.EllipticCurvePublicKey) and ec_key.curve.name == "secp256r1"


def test_a_second_ca_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    create_ca(tmp_path / "ca", "Test CA")
    with pytest.raises(PkiError):
        create_ca(tmp_path / "ca", "Test CA")


def test_revocation_accumulates_in_the_crl(tmp_path: Path) -> None:
    init_dev_pki(tmp_path, PARTIES)
    first, second = (party_paths(tmp_path, k)[0] for k, _ in PARTIES)
    revoke(tmp_path / "ca", tmp_path / "crl", first)
    crl_path = revoke(tmp_path / "ca", tmp_path / "crl", second)
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert {entry.serial_number for entry in crl} == {
        load_certificate(first).serial_number,
        load_certificate(second).serial_number,
    }


def test_a_certificate_of_another_ca_cannot_be_revoked_here(tmp_path: Path) -> None:
    init_dev_pki(tmp_path / "a", PARTIES[:1])
    create_ca(tmp_path / "b" / "ca", "Other CA")
    with pytest.raises(PkiError):
        revoke(
            tmp_path / "b" / "ca",
            tmp_path / "b" / "crl",
            party_paths(tmp_path / "a", "psw:02000000")[0],
        )


def test_list_shows_ca_and_parties_with_expiry_and_revocation(tmp_path: Path) -> None:
    init_dev_pki(tmp_path, PARTIES)
    revoke(tmp_path / "ca", tmp_path / "crl", party_paths(tmp_path, "dst:09162000")[0])
    infos = list_certificates(tmp_path)
    assert [(i.kennung, i.is_ca, i.revoked, i.purpose.value) for i in infos] == [
        (None, True, False, "signature"),
        ("dst:09162000", False, True, "signature"),
        ("dst:09162000", False, False, "encryption"),
        ("psw:02000000", False, False, "signature"),
        ("psw:02000000", False, False, "encryption"),
    ]
    assert all(
        i.not_after > load_certificate(tmp_path / "ca" / "ca.crt").not_valid_before_utc
        for i in infos
    )
