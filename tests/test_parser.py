"""Specification of the hardened parser for untrusted XML."""

from __future__ import annotations

import pytest

from broker.errors import Reason
from signing import ParserLimits, XmlError, parse_untrusted

SMALL = b'<m:msg xmlns:m="urn:test"><a>1</a></m:msg>'


def test_well_formed_document_is_parsed() -> None:
    root = parse_untrusted(SMALL)
    assert root.tag == "{urn:test}msg"
    assert root.findtext("a") == "1"


def test_whitespace_is_kept_because_signatures_cover_it() -> None:
    root = parse_untrusted(b"<r>\n  <a> x </a>\n</r>")
    assert root.text == "\n  "
    assert root.findtext("a") == " x "


def test_syntax_error_is_malformed_xml() -> None:
    with pytest.raises(XmlError) as caught:
        parse_untrusted(b"<r><a></r>")
    assert caught.value.reason is Reason.MALFORMED_XML


def test_empty_input_is_malformed_xml() -> None:
    with pytest.raises(XmlError):
        parse_untrusted(b"")


def test_text_instead_of_bytes_is_refused() -> None:
    with pytest.raises(XmlError):
        parse_untrusted("<r/>")  # type: ignore[arg-type]


def test_input_over_max_bytes_is_refused_before_parsing() -> None:
    with pytest.raises(XmlError, match="larger than 64 bytes"):
        parse_untrusted(b"<r>" + b"x" * 100 + b"</r>", ParserLimits(max_bytes=64))


def test_input_of_exactly_max_bytes_is_accepted() -> None:
    data = b"<r>" + b"x" * 57 + b"</r>"
    assert len(data) == 64
    assert parse_untrusted(data, ParserLimits(max_bytes=64)).tag == "r"


def test_document_deeper_than_max_depth_is_refused() -> None:
    data = b"<a>" * 11 + b"</a>" * 11
    with pytest.raises(XmlError, match="deeper than 10"):
        parse_untrusted(data, ParserLimits(max_depth=10))


def test_document_exactly_max_depth_deep_is_accepted() -> None:
    data = b"<a>" * 10 + b"</a>" * 10
    assert parse_untrusted(data, ParserLimits(max_depth=10)).tag == "a"


def test_default_depth_limit_is_256() -> None:
    parse_untrusted(b"<a>" * 256 + b"</a>" * 256)
    with pytest.raises(XmlError):
        parse_untrusted(b"<a>" * 257 + b"</a>" * 257)


def test_depth_limit_above_libxml2_ceiling_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        ParserLimits(max_depth=1000)


def test_doctype_without_entities_is_refused() -> None:
    with pytest.raises(XmlError, match="DOCTYPE"):
        parse_untrusted(b"<!DOCTYPE r><r/>")


def test_xml_declaration_and_encoding_are_honoured() -> None:
    data = '<?xml version="1.0" encoding="ISO-8859-1"?><r>Müller</r>'.encode("latin-1")
    assert parse_untrusted(data).text == "Müller"
