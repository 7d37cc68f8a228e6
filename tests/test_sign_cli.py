"""Specification of ``xbroker sign`` and ``xbroker verify``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.cli import main
from signing.devpki import init_dev_pki
from signing.keyfiles import party_paths

DOC = b'<m:msg xmlns:m="urn:test"><a>1</a></m:msg>'


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    init_dev_pki(tmp_path / ".xbroker" / "pki", [("psw:02000000", "Portal")])
    (tmp_path / "message.xml").write_bytes(DOC)
    return tmp_path


def _sign(workdir: Path) -> Path:
    cert, key = party_paths(workdir / ".xbroker" / "pki", "psw:02000000")
    out = workdir / "signed.xml"
    assert (
        main(["sign", "message.xml", "--key", str(key), "--cert", str(cert), "-o", str(out)]) == 0
    )
    return out


def test_signed_file_verifies_with_default_trust_and_crl(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = _sign(workdir)
    assert main(["verify", str(signed)]) == 0
    assert "psw:02000000" in capsys.readouterr().out


def test_sign_without_output_writes_to_stdout(
    workdir: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    cert, key = party_paths(workdir / ".xbroker" / "pki", "psw:02000000")
    assert main(["sign", "message.xml", "--key", str(key), "--cert", str(cert)]) == 0
    assert b"<ds:Signature" in capsysbinary.readouterr().out


def test_verify_json_names_signer_and_fingerprint(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = _sign(workdir)
    capsys.readouterr()
    assert main(["verify", str(signed), "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["valid"] is True
    assert outcome["subject_kennung"] == "psw:02000000"
    assert len(outcome["fingerprint"]) == 64


def test_tampered_file_exits_1_with_the_reason_code(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = _sign(workdir)
    signed.write_bytes(signed.read_bytes().replace(b"<a>1</a>", b"<a>2</a>"))
    assert main(["verify", str(signed)]) == 1
    assert "digest-mismatch" in capsys.readouterr().out


def test_unsigned_file_exits_1_with_signature_missing(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "message.xml", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["code"] == "signature-missing"


def test_malformed_file_exits_1_with_malformed_xml(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "broken.xml").write_bytes(b"<r>")
    assert main(["verify", "broken.xml", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["code"] == "malformed-xml"


def test_missing_trust_folder_exits_2(workdir: Path) -> None:
    signed = _sign(workdir)
    assert main(["verify", str(signed), "--trust", str(workdir / "absent")]) == 2


def test_missing_crl_folder_rejects_unless_no_crl(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signed = _sign(workdir)
    assert main(["verify", str(signed), "--crl", str(workdir / "absent")]) == 1
    assert "certificate-untrusted" in capsys.readouterr().out
    assert main(["verify", str(signed), "--crl", str(workdir / "absent"), "--no-crl"]) == 0


def test_verify_with_trust_alone_names_crl_when_the_issuers_crl_is_missing(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    signed = _sign(workdir)
    elsewhere = workdir / "elsewhere"  # whose settings' CRL folder holds no CRL
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()

    assert main(["verify", str(signed), "--trust", str(workdir / ".xbroker/pki/trust")]) == 1

    out = capsys.readouterr().out
    assert "certificate-untrusted" in out
    assert "--crl DIR" in out and "--no-crl" in out


def test_verify_with_trust_alone_names_crl_only_for_a_crl_problem(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The parser's message quotes the tag "CRL": no CRL problem, so no word of --crl.
    (workdir / "broken.xml").write_bytes(b"<CRL></x>")
    trust = str(workdir / ".xbroker/pki/trust")

    assert main(["verify", "broken.xml", "--trust", trust]) == 1

    out = capsys.readouterr().out
    assert "malformed-xml" in out and "CRL" in out
    assert "--crl DIR" not in out
