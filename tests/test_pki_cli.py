"""Specification of ``xbroker pki``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.cli import main


def test_ca_creates_ca_trust_and_crl(tmp_path: Path) -> None:
    assert main(["pki", "ca", "--pki-dir", str(tmp_path)]) == 0
    assert (tmp_path / "ca" / "ca.crt").is_file()
    assert any((tmp_path / "trust").iterdir())
    assert any((tmp_path / "crl").iterdir())


def test_default_pki_dir_is_dot_xbroker_pki(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["pki", "ca"]) == 0
    assert (tmp_path / ".xbroker" / "pki" / "ca" / "ca.crt").is_file()


def test_issue_writes_the_party_files(tmp_path: Path) -> None:
    main(["pki", "ca", "--pki-dir", str(tmp_path)])
    code = main(
        ["pki", "issue", "psw:02000000", "Portal", "--key-type", "ec", "--pki-dir", str(tmp_path)]
    )
    assert code == 0
    assert (tmp_path / "parties" / "psw_02000000.crt").is_file()
    assert (tmp_path / "parties" / "psw_02000000.key").is_file()


def test_issue_without_a_ca_fails_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pki", "issue", "psw:1", "X", "--pki-dir", str(tmp_path)]) == 2
    assert "no usable CA" in capsys.readouterr().err


def test_list_json_reports_revocation_by_kennung(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pki = ["--pki-dir", str(tmp_path)]
    main(["pki", "ca", *pki])
    main(["pki", "issue", "psw:02000000", "Portal", "--key-type", "ec", *pki])
    main(["pki", "issue", "dst:1", "Amt", "--key-type", "ec", *pki])
    assert main(["pki", "revoke", "dst:1", *pki]) == 0
    capsys.readouterr()
    assert main(["pki", "list", "--json", *pki]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {row["kennung"]: row["revoked"] for row in rows} == {
        None: False,
        "dst:1": True,
        "psw:02000000": False,
    }
    assert all("not_after" in row for row in rows)


def test_every_subcommand_uses_the_pki_of_the_settings_config_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "site" / "xbroker.toml"
    config.parent.mkdir()
    config.write_text('pki_dir = "keys"\n', encoding="utf-8")
    site = ["--config", str(config)]

    assert main([*site, "pki", "ca"]) == 0
    assert main([*site, "pki", "issue", "psw:02000000", "Portal", "--key-type", "ec"]) == 0
    assert main([*site, "pki", "revoke", "psw:02000000"]) == 0

    pki = tmp_path / "site" / "keys"
    assert (pki / "ca" / "ca.crt").is_file()
    assert (pki / "parties" / "psw_02000000.crt").is_file()
    assert not (tmp_path / ".xbroker").exists()
