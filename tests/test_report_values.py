"""Reports never quote a value of the message, wherever in the document it stands.

A marker is put where a validator quotes a value from elsewhere than the element it
reports on (an IDREF without its ID, a keyref without its key, an IDREFS token), or
where libxml2 quotes it in words the first redaction did not know (facets, fixed
values, key-sequences). Both reports, xmlschema's and lxml's, must say what failed
without the marker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from xta_schemas.report import DetailedReporter, issues_from_lxml

MARKER = "Privatmarke7f3a"

XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">
  <xs:element name="akte">
    <xs:complexType>
      <xs:sequence>
        <xs:element name="dok" minOccurs="0" maxOccurs="unbounded">
          <xs:complexType>
            <xs:attribute name="id" type="xs:ID"/>
            <xs:attribute name="ref" type="xs:IDREF"/>
            <xs:attribute name="refs" type="xs:IDREFS"/>
            <xs:attribute name="k" type="xs:string"/>
            <xs:attribute name="kr" type="xs:string"/>
          </xs:complexType>
        </xs:element>
        <xs:element name="kurz" minOccurs="0">
          <xs:simpleType>
            <xs:restriction base="xs:string"><xs:maxLength value="2"/></xs:restriction>
          </xs:simpleType>
        </xs:element>
        <xs:element name="ab" minOccurs="0">
          <xs:simpleType>
            <xs:restriction base="xs:integer"><xs:minInclusive value="10"/></xs:restriction>
          </xs:simpleType>
        </xs:element>
        <xs:element name="fest" minOccurs="0" fixed="F" type="xs:string"/>
        <xs:element name="stellen" minOccurs="0">
          <xs:simpleType>
            <xs:restriction base="xs:decimal"><xs:totalDigits value="2"/></xs:restriction>
          </xs:simpleType>
        </xs:element>
      </xs:sequence>
    </xs:complexType>
    <xs:key name="schluessel"><xs:selector xpath="dok"/><xs:field xpath="@k"/></xs:key>
    <xs:keyref name="verweis" refer="schluessel">
      <xs:selector xpath="dok"/><xs:field xpath="@kr"/>
    </xs:keyref>
  </xs:element>
</xs:schema>
"""

M = MARKER
CASES = {
    "an IDREF without its ID": f'<dok k="1"/><dok k="2" ref="{M}"/>',
    "an IDREFS token without its ID": f'<dok k="1" id="a1"/><dok k="2" refs="a1 {M}"/>',
    "a keyref without its key": f'<dok k="1"/><dok k="2" kr="{M}"/>',
    "a duplicate key": f'<dok k="{M}"/><dok k="{M}"/>',
    "a duplicate ID": f'<dok k="1" id="{M}"/><dok k="2" id="{M}"/>',
    "a value below its minimum": "<ab>7</ab>",
    "a value other than the fixed one": f"<fest>{M}</fest>",
    "a number with too many digits": "<stellen>123</stellen>",
    "a text too long": f"<kurz>{M}</kurz>",
}
# Values of the message that are not the marker: digits a validator quotes as well.
QUOTED_DIGITS = {"a value below its minimum": "7", "a number with too many digits": "123"}


def _reports(tmp_path: Path, content: str) -> list[str]:
    """The reasons of both reports for ``<akte>content</akte>``, which must be invalid."""
    xsd = tmp_path / "akte.xsd"
    xsd.write_text(XSD, encoding="utf-8")
    root = etree.fromstring(f"<akte>{content}</akte>")
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    schema.validate(root)
    reporter = DetailedReporter((xsd,), {}, {})
    assert reporter.prepare() is None
    detailed = reporter.issues(root, schema.error_log)
    assert detailed, "xmlschema finds the message invalid"
    lxml = issues_from_lxml(schema.error_log)
    return [issue.reason for issue in (*detailed, *lxml)]


@pytest.mark.parametrize("case", sorted(CASES))
def test_no_reason_quotes_a_value_of_the_message(tmp_path: Path, case: str) -> None:
    reasons = _reports(tmp_path, CASES[case])

    for reason in reasons:
        assert MARKER not in reason, reason
        digits = QUOTED_DIGITS.get(case)
        if digits is not None:
            assert f"'{digits}'" not in reason, reason
        assert " object at 0x" not in reason and "Xsd" not in reason, reason


def test_an_unknown_idref_is_reported_with_what_is_missing(tmp_path: Path) -> None:
    reasons = _reports(tmp_path, CASES["an IDREF without its ID"])

    assert "IDREF '[value]' not found in XML document" in reasons


def test_a_keyref_names_its_constraint_as_the_schema_does(tmp_path: Path) -> None:
    reasons = _reports(tmp_path, CASES["a keyref without its key"])

    assert any("xs:key 'schluessel'" in reason for reason in reasons), reasons
    assert any("key-sequence ['[value]'] of keyref 'verweis'" in r for r in reasons), reasons
