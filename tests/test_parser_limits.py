"""Specification of the parser's limits on the shape of a document.

Each limit is shown at its value (accepted) and one past it (refused with its reason),
on both ways a document is parsed: whole, when counts of single bytes already bound its
shape, and counted node by node, when they do not. A CDATA section full of ``<``, ``=``
and ``xmlns`` (text, so it changes no count that matters) sends a document the second way;
it sits in an element of its own, ``c``, which the first way gets too, empty.
"""

from __future__ import annotations

import pytest

from signing import LimitError, ParserLimits, XmlError, parse_untrusted

LIMITS = ParserLimits(
    max_elements=10,
    max_attributes=20,
    max_attributes_per_element=4,
    max_namespaces=6,
    max_namespaces_in_scope=3,
    max_text_length=200,
)
# 25 of each byte the bounds count: more than any limit above allows.
COUNTED = b"<![CDATA[" + b"<=xmlns" * 25 + b"]]>"
PATHS = ["whole", "counted"]


def _doc(inner: bytes, path: str, root_attributes: bytes = b"") -> bytes:
    padding = COUNTED if path == "counted" else b""
    return b"<r" + root_attributes + b"><c>" + padding + b"</c>" + inner + b"</r>"


def _refused(data: bytes, reason: str) -> LimitError:
    with pytest.raises(LimitError) as caught:
        parse_untrusted(data, LIMITS)
    assert caught.value.reason == reason
    return caught.value


@pytest.mark.parametrize("path", PATHS)
def test_elements_up_to_the_limit_are_accepted(path: str) -> None:
    # r, c and eight a: ten elements.
    assert len(parse_untrusted(_doc(b"<a/>" * 8, path), LIMITS)) == 9


@pytest.mark.parametrize("path", PATHS)
def test_one_element_past_the_limit_is_refused(path: str) -> None:
    error = _refused(_doc(b"<a/>" * 9, path), "too-many-elements")
    assert "more than 10 elements" in error.detail


@pytest.mark.parametrize("path", PATHS)
def test_comments_and_processing_instructions_count_as_elements(path: str) -> None:
    _refused(_doc(b"<a/>" * 5 + b"<!--c--><?p?>" * 3, path), "too-many-elements")


@pytest.mark.parametrize("path", PATHS)
def test_attributes_per_element_up_to_the_limit_are_accepted(path: str) -> None:
    root = parse_untrusted(_doc(b'<a w="" x="" y="" z=""/>', path), LIMITS)
    assert len(root[1].attrib) == 4


@pytest.mark.parametrize("path", PATHS)
def test_one_attribute_past_the_per_element_limit_is_refused(path: str) -> None:
    error = _refused(_doc(b'<a v="" w="" x="" y="" z=""/>', path), "too-many-attributes")
    assert "more than 4 attributes" in error.detail


@pytest.mark.parametrize("path", PATHS)
def test_attributes_in_the_document_past_the_limit_are_refused(path: str) -> None:
    element = b'<a w="" x="" y=""/>'
    parse_untrusted(_doc(element * 6 + b'<a x="" y=""/>', path), LIMITS)  # 20
    error = _refused(_doc(element * 7, path), "too-many-attributes")  # 21
    assert "more than 20 attributes" in error.detail


@pytest.mark.parametrize("path", PATHS)
def test_namespace_declarations_in_the_document_past_the_limit_are_refused(path: str) -> None:
    # Each on an element of its own: one in scope at a time, seven in the document.
    declared = b"".join(b'<p%d:a xmlns:p%d="urn:%d"/>' % (i, i, i) for i in range(7))
    parse_untrusted(_doc(declared[: declared.rindex(b"<p6")], path), LIMITS)
    error = _refused(_doc(declared, path), "too-many-namespaces")
    assert "more than 6 namespace declarations" in error.detail


@pytest.mark.parametrize("path", PATHS)
def test_namespaces_in_scope_past_the_limit_are_refused(path: str) -> None:
    three = b' xmlns:a="urn:a" xmlns:b="urn:b" xmlns:c="urn:c"'
    parse_untrusted(_doc(b"<x/>", path, three), LIMITS)
    error = _refused(_doc(b'<x xmlns:d="urn:d"/>', path, three), "too-many-namespaces")
    assert "more than 3 namespaces in scope" in error.detail


@pytest.mark.parametrize(
    "shape",
    [
        b"<a>%s</a>",
        b'<a v="%s"/>',
        b"<!--%s-->",
        b"<?p %s?>",
        b"<a/>%s",  # the text after an element
    ],
)
@pytest.mark.parametrize("path", PATHS)
def test_a_text_past_the_length_limit_is_refused(path: str, shape: bytes) -> None:
    # The whole document must be longer than the limit for it to matter at all.
    parse_untrusted(_doc(shape % (b"t" * 200), path), LIMITS)
    error = _refused(_doc(shape % (b"t" * 201), path), "text-too-long")
    assert "longer than 200 characters" in error.detail


def test_a_limit_error_is_an_xml_error() -> None:
    with pytest.raises(XmlError):
        parse_untrusted(_doc(b"<a/>" * 9, "whole"), LIMITS)


def test_a_syntax_error_in_the_counted_path_is_malformed_xml() -> None:
    with pytest.raises(XmlError) as caught:
        parse_untrusted(b"<r>" + COUNTED + b"<a></r>", LIMITS)
    assert caught.value.reason == "malformed-xml"


def test_a_doctype_in_the_counted_path_is_refused() -> None:
    with pytest.raises(XmlError, match="DOCTYPE"):
        parse_untrusted(b"<!DOCTYPE r><r>" + COUNTED + b"</r>", LIMITS)


def test_every_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_namespaces_in_scope"):
        ParserLimits(max_namespaces_in_scope=0)


def test_a_text_past_libxml2s_own_bound_is_refused_by_libxml2() -> None:
    # At the default, libxml2 refuses it while parsing, before the text is complete.
    with pytest.raises(XmlError, match="Text node too long") as caught:
        parse_untrusted(b"<r>" + b"t" * 10_000_001 + b"</r>")
    assert caught.value.reason == "malformed-xml"


def test_a_text_limit_above_libxml2s_own_bound_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="max_text_length"):
        ParserLimits(max_text_length=10_000_001)


def test_in_utf16_a_character_holding_the_byte_of_lt_is_no_element() -> None:
    # U+013C is 3C 01 in UTF-16LE: a byte count would take each for an element.
    text = "\u013c" * 20
    data = f'<?xml version="1.0" encoding="UTF-16"?><r>{text}</r>'.encode("utf-16")

    assert parse_untrusted(data, LIMITS).text == text


def test_in_utf16_the_limits_are_counted_node_by_node() -> None:
    # "xmlns" is no run of bytes in UTF-16: the declarations are counted as they come.
    declared = " ".join(f'xmlns:p{i}="urn:{i}"' for i in range(4))
    data = f'<?xml version="1.0" encoding="UTF-16"?><r {declared}/>'.encode("utf-16")

    _refused(data, "too-many-namespaces")
