"""The one hardened XML parser for untrusted input.

Everything that reads bytes from outside (messages, receipts, CLI files) goes through
``parse_untrusted``. It refuses any DOCTYPE, so no entity can be declared, expanded or
fetched; it never touches the network; it checks the size before parsing and the depth
while parsing. Failures are ``XmlError`` (``malformed-xml``), raised quickly and in
bounded memory, whatever the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from lxml import etree

from signing.errors import XmlError

__all__ = ["LIBXML2_MAX_DEPTH", "ParserLimits", "parse_untrusted"]

# libxml2 refuses deeper documents by itself unless huge_tree is on (it never is here).
LIBXML2_MAX_DEPTH: Final = 256


@dataclass(frozen=True)
class ParserLimits:
    """Bounds on untrusted XML. ``max_depth`` counts the root as depth 1."""

    max_bytes: int = 10 * 1024 * 1024
    max_depth: int = LIBXML2_MAX_DEPTH

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if not 1 <= self.max_depth <= LIBXML2_MAX_DEPTH:
            raise ValueError(f"max_depth must be between 1 and {LIBXML2_MAX_DEPTH}")


def _new_parser() -> etree.XMLParser:
    # A parser per call: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_blank_text=False,
        recover=False,
    )


def _check_depth(root: etree._Element, max_depth: int) -> None:
    stack: list[tuple[etree._Element, int]] = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > max_depth:
            raise XmlError(f"document deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in element)


def parse_untrusted(data: bytes, limits: ParserLimits = ParserLimits()) -> etree._Element:
    """Parse untrusted bytes into an element tree, or raise ``XmlError``."""
    if not isinstance(data, bytes):
        raise XmlError("input must be bytes")
    if len(data) > limits.max_bytes:
        raise XmlError(f"document larger than {limits.max_bytes} bytes")
    try:
        root = etree.fromstring(data, parser=_new_parser())
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
