"""`xbroker pki init`: the development PKI for the broker and every party of the directory."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from broker.cli import main
from signing import load_certificate, subject_kennung
from signing.keyfiles import party_paths

PARTIES = ["xbr:broker", "osi:hh-portal", "psw:02000000", "psw:01060063", "gew:02000000"]


def test_pki_init_issues_a_leaf_for_the_broker_and_every_party(tmp_path: Path) -> None:
    assert main(["pki", "init", "--pki-dir", str(tmp_path)]) == 0

    for kennung in PARTIES:
        cert_path, key_path = party_paths(tmp_path, kennung)
        cert = load_certificate(cert_path)
        assert subject_kennung(cert) == kennung
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature
        assert key_path.stat().st_mode & 0o077 == 0, "private keys are readable by the owner only"
    assert list((tmp_path / "trust").glob("*.crt"))


def test_pki_init_twice_keeps_the_existing_keys(tmp_path: Path) -> None:
    main(["pki", "init", "--pki-dir", str(tmp_path)])
    before = party_paths(tmp_path, "psw:02000000")[0].read_bytes()

    assert main(["pki", "init", "--pki-dir", str(tmp_path)]) == 0

    assert party_paths(tmp_path, "psw:02000000")[0].read_bytes() == before
