"""Invalid messages: each is refused with the code, path and reason that explain it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from lxml import etree

from broker.commands.run import prepare_reports
from broker.errors import Reason
from xta_schemas import Catalog, MessageError, Standard
from xta_schemas.report import (
    MAX_ISSUES,
    MAX_REPORT_ELEMENTS,
    DetailedReporter,
    issues_from_lxml,
)
from xta_schemas.samples import sample_root

XMELD_10 = "http://www.xbroker.example/xmeld/1.0"
XMELD_11 = "http://www.xbroker.example/xmeld/1.1"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def _anmeldung(catalog: Catalog, key: str = "xmeld/1.1") -> tuple[Standard, etree._Element]:
    standard = catalog.get(key)
    return standard, sample_root(standard, "meldung.anmeldung.0200")


def _one(root: etree._Element, path: str) -> etree._Element:
    found = root.find(path)
    assert found is not None, path
    return found


def _schema_error(standard: Standard, root: etree._Element) -> MessageError:
    with pytest.raises(MessageError) as caught:
        standard.validate(root)
    assert caught.value.reason is Reason.SCHEMA_INVALID
    return caught.value


def test_missing_birth_date_is_reported_at_the_person(catalog: Catalog) -> None:
    standard, root = _anmeldung(catalog)
    person = _one(root, "anmeldung/person")
    person.remove(_one(person, "geburtsdatum"))
    error = _schema_error(standard, root)
    issue = error.issues[0]
    assert issue.path == "/xmeld:meldung.anmeldung.0200/anmeldung/person"
    assert "geburtsdatum" in issue.reason
    assert issue.line == cast(int, person.sourceline)  # lxml-stubs mistype sourceline


def test_wrong_type_is_reported_at_the_element(catalog: Catalog) -> None:
    standard, root = _anmeldung(catalog)
    _one(root, "anmeldung/neueWohnung/einzugsdatum").text = "1. Dezember"
    issue = _schema_error(standard, root).issues[0]
    assert issue.path == "/xmeld:meldung.anmeldung.0200/anmeldung/neueWohnung/einzugsdatum"
    assert "1. Dezember" not in issue.reason, "reports never quote the message's values"
    assert "date" in issue.reason


def test_ags_with_seven_digits_is_invalid(catalog: Catalog) -> None:
    standard, root = _anmeldung(catalog)
    _one(root, "anmeldung/neueWohnung/anschrift/gemeindeschluessel").text = "0200000"
    issue = _schema_error(standard, root).issues[0]
    assert issue.path.endswith("/neueWohnung/anschrift/gemeindeschluessel")
    assert "[0-9]{8}" in issue.reason


def test_value_outside_the_code_list_is_invalid(catalog: Catalog) -> None:
    standard, root = _anmeldung(catalog)
    _one(root, "anmeldung/person/geschlecht/code").text = "f"
    issue = _schema_error(standard, root).issues[0]
    assert issue.path == "/xmeld:meldung.anmeldung.0200/anmeldung/person/geschlecht/code"
    assert issue.reason == "value '[value]': value must be one of ['m', 'w', 'd', 'x']"


def test_content_element_in_a_foreign_namespace_is_invalid(catalog: Catalog) -> None:
    standard, root = _anmeldung(catalog)
    anmeldung = _one(root, "anmeldung")
    anmeldung.tag = f"{{{XMELD_11}}}anmeldung"  # XÖV content elements are unqualified
    issue = _schema_error(standard, root).issues[0]
    assert issue.path == "/xmeld:meldung.anmeldung.0200"
    assert "Unexpected child with tag 'xmeld:anmeldung'" in issue.reason


def test_element_of_1_1_sent_as_1_0_is_invalid(catalog: Catalog) -> None:
    newer = sample_root(catalog.get("xmeld/1.1"), "meldung.anmeldung.0200")
    older_standard, older = _anmeldung(catalog, "xmeld/1.0")
    _one(older, "anmeldung").append(_one(newer, "anmeldung/wohnungsgeberbestaetigung"))
    issue = _schema_error(older_standard, older).issues[0]
    assert issue.path == "/xmeld:meldung.anmeldung.0200/anmeldung"
    assert "wohnungsgeberbestaetigung" in issue.reason


def test_1_0_message_without_the_new_elements_is_valid_as_1_1(catalog: Catalog) -> None:
    standard, root = _anmeldung(catalog, "xmeld/1.0")
    renamed = etree.fromstring(etree.tostring(root).replace(XMELD_10.encode(), XMELD_11.encode()))
    catalog.get("xmeld/1.1").validate(renamed)
    del standard


def test_enveloped_signature_is_not_part_of_the_schema(catalog: Catalog) -> None:
    standard, root = _anmeldung(catalog)
    etree.SubElement(root, "{http://www.w3.org/2000/09/xmldsig#}Signature")
    issue = _schema_error(standard, root).issues[0]
    assert "Signature" in issue.reason


def test_schema_error_detail_names_the_standard_and_first_issue(catalog: Catalog) -> None:
    standard, root = _anmeldung(catalog)
    _one(root, "anmeldung/neueWohnung/einzugsdatum").text = "morgen"
    error = _schema_error(standard, root)
    assert error.detail.startswith("not valid against xmeld/1.1: line ")
    assert str(error.issues[0]) in error.detail


def test_report_is_capped_at_twenty_issues(catalog: Catalog) -> None:
    standard = catalog.get("xbau/1.0")
    root = sample_root(standard, "bau.antrag.0200")
    anlage = _one(root, "antrag/anlage")
    for _ in range(30):
        broken = etree.fromstring(etree.tostring(anlage))
        _one(broken, "sha256").text = "not-a-hash"
        _one(root, "antrag").append(broken)
    assert len(_schema_error(standard, root).issues) == MAX_ISSUES


def test_issue_prints_as_line_path_reason(catalog: Catalog) -> None:
    standard, root = _anmeldung(catalog)
    _one(root, "anmeldung/neueWohnung/einzugsdatum").text = "morgen"
    issue = _schema_error(standard, root).issues[0]
    assert str(issue) == f"line {issue.line} {issue.path}: {issue.reason}"


# -- header ---------------------------------------------------------------------------------

_ID = "nachrichtenkopf.g2g/identifikation.nachricht"


def _header_error(catalog: Catalog, change: Callable[[etree._Element], None]) -> MessageError:
    standard, root = _anmeldung(catalog)
    change(root)
    with pytest.raises(MessageError) as caught:
        standard.header(root)
    assert caught.value.reason is Reason.HEADER_INVALID
    return caught.value


def test_header_without_uuid_is_invalid(catalog: Catalog) -> None:
    def drop(root: etree._Element) -> None:
        ident = _one(root, _ID)
        ident.remove(_one(ident, "nachrichtenUUID"))

    assert "[header] uuid: " in _header_error(catalog, drop).detail


def test_header_with_upper_case_uuid_is_invalid(catalog: Catalog) -> None:
    def upper(root: etree._Element) -> None:
        node = _one(root, f"{_ID}/nachrichtenUUID")
        node.text = (node.text or "").upper()

    error = _header_error(catalog, upper)
    assert "is not an RFC 4122 UUID: not lower case" in error.detail
    assert error.issues[0].path.endswith("/identifikation.nachricht/nachrichtenUUID")


def test_nachrichtentyp_must_match_the_root_element(catalog: Catalog) -> None:
    def retype(root: etree._Element) -> None:
        _one(root, f"{_ID}/nachrichtentyp/code").text = "meldung.anmeldung.ablehnung.0202"

    assert "the root element's name" in _header_error(catalog, retype).detail


def test_creation_time_without_time_zone_is_invalid(catalog: Catalog) -> None:
    def naive(root: etree._Element) -> None:
        _one(root, f"{_ID}/erstellungszeitpunkt").text = "2026-11-28T10:15:00"

    assert 'no time zone, and the manifest\'s [header] time_zone = "required"' in (
        _header_error(catalog, naive).detail
    )


def test_header_without_author_is_invalid(catalog: Catalog) -> None:
    def drop(root: etree._Element) -> None:
        kopf = _one(root, "nachrichtenkopf.g2g")
        kopf.remove(_one(kopf, "autor"))

    assert "[header] author: " in _header_error(catalog, drop).detail


def test_reader_with_malformed_kennung_is_invalid(catalog: Catalog) -> None:
    def garble(root: etree._Element) -> None:
        _one(root, "nachrichtenkopf.g2g/leser/kennung").text = "Meldebehörde Hamburg"

    assert "does not match [header.party] kennung_pattern" in _header_error(catalog, garble).detail


def test_test_flag_must_be_boolean(catalog: Catalog) -> None:
    def maybe(root: etree._Element) -> None:
        root.set("test", "vielleicht")

    assert (
        "[header] test (line 3 /xmeld:meldung.anmeldung.0200/@test)"
        in _header_error(catalog, maybe).detail
    )


def test_lxml_error_log_is_the_report_when_xmlschema_cannot_build(
    catalog: Catalog, tmp_path: Path
) -> None:
    standard, root = _anmeldung(catalog)
    _one(root, "anmeldung/neueWohnung/einzugsdatum").text = "morgen"
    schema = etree.XMLSchema(etree.parse(str(standard.folder / "xmeld.xsd")))
    assert not schema.validate(root)
    reporter = DetailedReporter((tmp_path / "missing.xsd",), {}, {})
    issues = reporter.issues(root, schema.error_log)
    assert issues == issues_from_lxml(schema.error_log)
    assert "einzugsdatum" in issues[0].reason


def test_a_message_of_more_elements_than_the_report_bound_gets_lxmls_report(
    catalog: Catalog,
) -> None:
    # xmlschema would walk all of it in Python; lxml's log says where, in its words.
    standard = catalog.get("xbau/1.0")
    root = sample_root(standard, "bau.antrag.0200")
    antrag, anlage = _one(root, "antrag"), _one(root, "antrag/anlage")
    for _ in range(MAX_REPORT_ELEMENTS // len(list(anlage.iter())) + 1):
        antrag.append(etree.fromstring(etree.tostring(anlage)))
    _one(antrag[-1], "sha256").text = "not-a-hash"
    assert sum(1 for _ in root.iter()) > MAX_REPORT_ELEMENTS

    issues = _schema_error(standard, root).issues

    schema = etree.XMLSchema(etree.parse(str(standard.folder / "xbau.xsd")))
    assert not schema.validate(root)
    assert issues == issues_from_lxml(schema.error_log)


def test_a_report_schema_that_cannot_be_built_is_not_built_again(tmp_path: Path) -> None:
    missing = tmp_path / "later.xsd"
    reporter = DetailedReporter((missing,), {}, {})
    problem = reporter.prepare()
    assert problem is not None
    assert reporter.ready
    # Even once the file exists, the failed build is what the reporter keeps: a large
    # standard is not rebuilt for every invalid message.
    missing.write_text('<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"/>', encoding="utf-8")
    assert reporter.prepare() == problem


def test_prepare_reports_builds_every_report_schema_before_the_first_message() -> None:
    catalog = Catalog.load()
    assert not any(standard.report_ready for standard in catalog.standards)
    prepare_reports(catalog)
    assert all(standard.report_ready for standard in catalog.standards)
    assert all(standard.prepare_report() is None for standard in catalog.standards)
