"""The one hardened XML parser for untrusted input.

Everything that reads bytes from outside (messages, receipts, CLI files) goes through
``parse_untrusted``. It refuses any DOCTYPE, so no entity can be declared, expanded or
fetched; it never touches the network. It checks the size before parsing and the shape
(depth, elements, attributes, namespace declarations, text lengths: ``signing.shape``)
while parsing. Failures are ``XmlError``: ``malformed-xml`` for syntax, DOCTYPE, size
and depth, a ``LimitError`` with the reason of its limit for the rest; raised quickly
and in bounded memory, whatever the input.
"""

from __future__ import annotations

from typing import Final, TypedDict

from lxml import etree

from signing.errors import XmlError
from signing.shape import LIBXML2_MAX_DEPTH, Bounds, Counter, ParserLimits, check_tree

__all__ = ["ParserLimits", "parse_canonical", "parse_untrusted"]

_CHUNK: Final = 16 * 1024


class _Options(TypedDict):
    resolve_entities: bool
    no_network: bool
    load_dtd: bool
    dtd_validation: bool
    huge_tree: bool
    remove_blank_text: bool
    recover: bool


_OPTIONS: Final = _Options(
    resolve_entities=False,
    no_network=True,
    load_dtd=False,
    dtd_validation=False,
    huge_tree=False,
    remove_blank_text=False,
    recover=False,
)


def _new_parser() -> etree.XMLParser:
    # A parser per call: lxml parsers must not be shared between threads.
    return etree.XMLParser(**_OPTIONS)


def _check_depth(root: etree._Element, max_depth: int) -> None:
    stack: list[tuple[etree._Element, int]] = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > max_depth:
            raise XmlError(f"document deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in element)


def _parse_counting(data: bytes, counter: Counter) -> etree._Element | None:
    """Parse in chunks, counting as ``counter`` says; it stops at the first limit passed."""
    parser = etree.XMLPullParser(events=counter.events, **_OPTIONS)
    for start in range(0, len(data), _CHUNK):
        parser.feed(data[start : start + _CHUNK])
        counter.feed(parser.read_events())
    root: etree._Element | None = parser.close()
    counter.feed(parser.read_events())
    return root


def _parse(data: bytes, limits: ParserLimits) -> etree._Element | None:
    bounds = Bounds.of(data, limits)
    counts = bounds.counted(limits)  # or LimitError, where the bounds are exact
    if counts:
        root = _parse_counting(data, Counter(limits, counts))
    else:
        root = etree.fromstring(data, parser=_new_parser())
    if root is not None:
        check_tree(root, len(data), bounds, limits)
    return root


def parse_untrusted(
    data: bytes,
    limits: ParserLimits = ParserLimits(),  # noqa: B008 (frozen, immutable)
) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise ``XmlError``."""
    if not isinstance(data, bytes):
        raise XmlError("input must be bytes")
    if len(data) > limits.max_bytes:
        raise XmlError(f"document larger than {limits.max_bytes} bytes")
    try:
        root = _parse(data, limits)
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"not well-formed: {exc}") from exc
    if root is None:
        raise XmlError("empty document")
    # With load_dtd and resolve_entities off, libxml2 reads an internal subset without
    # expanding or fetching anything (and caps amplification); refusing it afterwards
    # keeps every entity trick out of the rest of the system.
    docinfo = root.getroottree().docinfo
    if docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise XmlError("DOCTYPE declarations are not allowed")
    if limits.max_depth < LIBXML2_MAX_DEPTH:
        _check_depth(root, limits.max_depth)
    return root


def parse_canonical(data: bytes) -> etree._Element:
    """Parse canonical XML this process wrote from a tree ``parse_untrusted`` accepted.

    Its shape is that tree's, but for namespace declarations, which exclusive c14n
    repeats on every element that uses one; so no shape limit is checked again.
    """
    try:
        root = etree.fromstring(data, parser=_new_parser())
    except etree.XMLSyntaxError as exc:
        raise XmlError(f"not well-formed: {exc}") from exc
    if root is None:
        raise XmlError("empty document")
    return root
