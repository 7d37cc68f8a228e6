"""``xbroker schemas``: list, check and load from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lxml import etree

from tests.standards_support import run_schemas

ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples" / "submissions"
FIXTURES = Path(__file__).parent / "fixtures" / "standards"


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code = run_schemas(*argv, "--json")
    return code, json.loads(capsys.readouterr().out)


def test_check_valid_submission_exits_0_and_names_standard(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_schemas("schemas", "check", str(EXAMPLES / "anmeldung-hamburg.xml")) == 0
    out = capsys.readouterr().out
    assert out.startswith("valid: ")
    assert "xmeld/1.1" in out and "ags=02000000" in out


def test_check_invalid_submission_exits_1_with_the_report(
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = EXAMPLES / "invalid-anmeldung-missing-birthdate.xml"
    code, result = run_json(capsys, "schemas", "check", str(path))
    assert code == 1
    assert isinstance(result, dict)
    assert (result["valid"], result["code"]) == (False, "schema-invalid")
    assert result["issues"][0]["path"] == "/xmeld:meldung.anmeldung.0200/anmeldung/person"
    assert "geburtsdatum" in result["issues"][0]["reason"]


def test_check_strips_a_top_level_signature_before_validating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = etree.parse(str(EXAMPLES / "gewerbe-anmeldung.xml")).getroot()
    etree.SubElement(root, "{http://www.w3.org/2000/09/xmldsig#}Signature")
    signed = tmp_path / "signed.xml"
    signed.write_bytes(etree.tostring(root))
    code, result = run_json(capsys, "schemas", "check", str(signed))
    assert code == 0
    assert isinstance(result, dict) and result["signature_removed"] is True


def test_check_malformed_xml_exits_1_as_malformed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text("<unclosed>")
    code, result = run_json(capsys, "schemas", "check", str(broken))
    assert code == 1
    assert isinstance(result, dict) and result["code"] == "malformed-xml"


def test_check_unknown_message_type_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.xml"
    other.write_text('<x:antrag xmlns:x="urn:example:other"/>')
    code, result = run_json(capsys, "schemas", "check", str(other))
    assert code == 1
    assert isinstance(result, dict) and result["code"] == "unknown-message-type"


def test_check_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_schemas("schemas", "check", str(tmp_path / "absent.xml")) == 2
    assert "cannot read" in capsys.readouterr().err


def test_check_with_standard_dir_knows_the_external_standard() -> None:
    sample = FIXTURES / "xsozial-1.0" / "samples" / "leistungsantrag-0100.xml"
    assert run_schemas("schemas", "check", str(sample)) == 1
    assert run_schemas("schemas", "check", "--standard-dir", str(FIXTURES), str(sample)) == 0


def test_list_names_every_bundled_standard(capsys: pytest.CaptureFixture[str]) -> None:
    code, listed = run_json(capsys, "schemas", "list")
    assert code == 0
    assert isinstance(listed, list)
    assert [item["key"] for item in listed] == [
        "xbau/1.0",
        "xgewerbe/1.0",
        "xmeld/1.0",
        "xmeld/1.1",
    ]


def test_load_reports_schema_files_and_valid_samples(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run_json(capsys, "schemas", "load", str(FIXTURES))
    assert code == 0
    assert isinstance(report, list) and [item["key"] for item in report] == ["xsozial/1.0"]
    assert len(report[0]["schema_files"]) == 4
    assert [sample["valid"] for sample in report[0]["sample_results"]] == [True]


def test_load_of_a_broken_standard_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "manifest.toml").write_text('[standard]\nname = "kaputt"\n')
    assert run_schemas("schemas", "load", str(tmp_path)) == 2
    assert "invalid manifest" in capsys.readouterr().err


def test_xbroker_cli_offers_the_schemas_command(capsys: pytest.CaptureFixture[str]) -> None:
    from broker.cli import main

    assert main(["schemas", "list"]) == 0
    assert "xmeld/1.1" in capsys.readouterr().out


def test_load_builds_the_report_schema_ahead_and_says_how_long_loading_took(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report = run_json(capsys, "schemas", "load", str(FIXTURES / "xsozial-1.0"))
    assert code == 0
    assert isinstance(report, list)
    (item,) = report
    assert item["report_schema_problem"] is None
    assert item["load_seconds"] > 0 and item["report_seconds"] >= 0


def test_load_prints_load_time_and_report_schema_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_schemas("schemas", "load", str(FIXTURES / "shapes" / "xgericht-1.0")) == 0
    out = capsys.readouterr().out
    assert "  load time      " in out
    assert "  report schema  built in " in out
