"""Reports speak XML Schema, not Python: no class names, no value reprs of the validators.

xmlschema builds its reasons from elementpath's typed values: a date-time the message
gets wrong is "Invalid datetime string … for <class 'elementpath.datatypes.datetime.
DateTime10'>", a facet bound is "DateTime10(2000, 1, 1, 0, 0, 0)". The report says
``xs:dateTime`` and ``'2000-01-01T00:00:00'`` instead, and still never the message's value.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from xta_schemas import ValidationIssue
from xta_schemas.report import REDACTED, DetailedReporter, in_schema_words

XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="termine">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="ab" type="Ab" minOccurs="0"/>
        <xs:element name="genau" type="Genau" minOccurs="0"/>
        <xs:element name="wann" type="xs:dateTime" minOccurs="0"/>
        <xs:element name="jahr" type="xs:gYear" minOccurs="0"/>
        <xs:element name="dauer" type="Dauer" minOccurs="0"/>
        <xs:element name="betrag" type="Betrag" minOccurs="0"/>
        <xs:element name="anzahl" type="xs:integer" minOccurs="0"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
  <xs:simpleType name="Ab">
    <xs:restriction base="xs:dateTime">
      <xs:minInclusive value="2000-01-01T00:00:00"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="Genau">
    <xs:restriction base="xs:dateTime">
      <xs:enumeration value="2000-01-01T00:00:00"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="Dauer">
    <xs:restriction base="xs:duration">
      <xs:enumeration value="P1D"/>
    </xs:restriction>
  </xs:simpleType>
  <xs:simpleType name="Betrag">
    <xs:restriction base="xs:decimal">
      <xs:minInclusive value="10.5"/>
    </xs:restriction>
  </xs:simpleType>
</xs:schema>
"""


def _report(tmp_path: Path, element: str, text: str) -> ValidationIssue:
    """The detailed report's one issue for a message whose ``element`` holds ``text``."""
    xsd = tmp_path / "termine.xsd"
    xsd.write_text(XSD, encoding="utf-8")
    root = etree.fromstring(f"<termine><{element}>{text}</{element}></termine>")
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    assert not schema.validate(root)
    reporter = DetailedReporter((xsd,), {}, {})
    assert reporter.prepare() is None, "the report must come from xmlschema, not lxml"

    [issue] = reporter.issues(root, schema.error_log)

    return issue


@pytest.mark.parametrize(
    ("element", "text", "words"),
    [
        ("wann", "morgen früh", "xs:dateTime"),
        ("jahr", "zweitausend", "xs:gYear"),
        ("ab", "1999-12-31T23:59:59", "'2000-01-01T00:00:00'"),
        ("genau", "2001-01-01T00:00:00", "['2000-01-01T00:00:00']"),
        ("dauer", "P2D", "['P1D']"),
        ("betrag", "3.25", "'10.5'"),
        ("anzahl", "zwölf", "is not an integer"),
    ],
)
def test_a_report_names_xsd_types_and_the_standards_values(
    tmp_path: Path, element: str, text: str, words: str
) -> None:
    issue = _report(tmp_path, element, text)

    assert "<class '" not in issue.reason
    assert "elementpath" not in issue.reason
    for python in ("DateTime10(", "GregorianYear10(", "Duration(", "Decimal(", "int()"):
        assert python not in issue.reason
    assert words in issue.reason
    assert text not in issue.reason
    assert issue.path == f"/termine/{element}"


def test_a_type_error_says_the_type_and_hides_the_value(tmp_path: Path) -> None:
    issue = _report(tmp_path, "wann", "morgen früh")

    assert issue.reason == f"Invalid datetime string {REDACTED} for xs:dateTime"


@pytest.mark.parametrize(
    ("python", "schema"),
    [
        (
            "Invalid datetime string '[value]' for <class 'elementpath.datatypes.datetime.Date10'>",
            "Invalid datetime string '[value]' for xs:date",
        ),
        (
            "value has to be lesser than Time(10, 0, 0)",
            "value has to be lesser than a value of xs:time",
        ),
        ("value is not <class 'str'>", "value is not xs:string"),
        ("value is not <class 'some.internal.Thing'>", "value is not its type"),
        ("could not convert string to float: '[value]'", "'[value]' is not a number"),
    ],
)
def test_python_words_left_in_a_reason_become_schema_words(python: str, schema: str) -> None:
    assert in_schema_words(python) == schema


def test_a_reason_in_schema_words_is_left_as_it_is() -> None:
    reason = "Element 'plz': [facet 'pattern'] The value '[value]' is not accepted by '[0-9]{5}'."

    assert in_schema_words(reason) == reason
