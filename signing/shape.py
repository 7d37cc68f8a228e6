"""The shape of an untrusted document and the limits on it, checked before it costs.

Canonicalization, copying and validation cost in proportion to a document's shape,
some of it super-linearly: libxml2's inclusive c14n grows with the square of the
namespaces in scope at each element, any c14n with the square of the attributes of one
element, and the tree itself takes about 250 bytes per node (10 MB of ``<x/>`` become a
500 MB tree). So ``parse_untrusted`` refuses a document whose shape passes a limit of
``ParserLimits`` while it parses, before the tree is complete.

Counting every node while parsing costs several times the parse itself, so it is done
only where it could matter. Counts of single bytes, taken first at a small share of a
parse's cost, bound the shape from above (``Bounds``): every element, comment and
processing instruction starts with ``<`` (and no element with ``</``), every attribute
and namespace declaration holds one ``=``, every declaration the text ``xmlns``; without
comments, CDATA and processing instructions the element count is exact, and a document
past it is refused unparsed. That holds where each of those characters is one byte of
its own (UTF-8, ASCII, the ISO 8859 and Windows code pages); a document in another
encoding (UTF-16, say) is counted node by node. A document within the bounds is parsed
whole by libxml2 at full speed; for the rest,
``Counter`` counts exactly what the bounds could not rule out, from the parser's events,
and the parse is abandoned at the first limit passed, so memory never grows past the
limits. The two limits no byte count bounds (attributes of one element, the length of
one text) are checked on the finished tree inside libxml2 (``check_tree``), and only
when the counts say they could be passed.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from enum import Enum
from typing import Final

from lxml import etree

from broker.errors import Reason
from signing.errors import LimitError

__all__ = [
    "LIBXML2_MAX_DEPTH",
    "LIBXML2_MAX_TEXT",
    "Bounds",
    "Count",
    "Counter",
    "ParserLimits",
    "check_tree",
]

# libxml2 refuses deeper documents, and longer texts, by itself unless huge_tree is on
# (it never is here).
LIBXML2_MAX_DEPTH: Final = 256
LIBXML2_MAX_TEXT: Final = 10_000_000
_WINDOW: Final = 1024 * 1024
_DECLARED_ENCODING: Final = re.compile(
    rb"(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']"
)
# Encodings in which "<", "=" and the letters of "xmlns" are single bytes of their own.
_ASCII_SUPERSETS: Final = re.compile(
    r"utf-?8|(us-)?ascii|iso[-_]?8859[-_]?\d+|latin-?1|(windows|cp)-?125\d", re.IGNORECASE
)


@dataclass(frozen=True)
class ParserLimits:
    """Bounds on untrusted XML; every one is refused before the work it would cost.

    ``max_depth`` counts the root as depth 1. Comments and processing instructions count
    as elements: each is a node of the tree like an element. Text lengths are in
    characters and apply to text, attribute values, comments and processing
    instructions; at libxml2's own bound (the default) libxml2 refuses a longer one
    while it parses. docs/security.md gives each limit's reason code and its reason.
    """

    max_bytes: int = 10 * 1024 * 1024
    max_depth: int = LIBXML2_MAX_DEPTH
    max_elements: int = 200_000
    max_attributes: int = 200_000
    max_attributes_per_element: int = 64
    max_namespaces: int = 1024
    max_namespaces_in_scope: int = 64
    max_text_length: int = LIBXML2_MAX_TEXT

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if not 1 <= self.max_depth <= LIBXML2_MAX_DEPTH:
            raise ValueError(f"max_depth must be between 1 and {LIBXML2_MAX_DEPTH}")
        if not 1 <= self.max_text_length <= LIBXML2_MAX_TEXT:
            raise ValueError(f"max_text_length must be between 1 and {LIBXML2_MAX_TEXT}")
        for name in (
            "max_elements",
            "max_attributes",
            "max_attributes_per_element",
            "max_namespaces",
            "max_namespaces_in_scope",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


class Count(Enum):
    """What the parse must count exactly, with the parser events that count it.

    Namespaces are followed by their declarations' start and end only (``end-ns`` comes
    when the declaring element ends), not by an event for every element.
    """

    NODES = ("start", "comment", "pi")
    ATTRIBUTES = ("start",)
    NAMESPACES = ("start-ns", "end-ns")


@dataclass(frozen=True, slots=True)
class Bounds:
    """Upper bounds of a document's shape, from counts of single bytes.

    ``exact_nodes``: the node bound is the count itself, because the document has no
    comment, CDATA section or processing instruction (but the XML declaration), the only
    places a ``<`` may stand in for nothing.
    """

    nodes: int
    attributes: int
    declarations: int
    exact_nodes: bool = False

    @classmethod
    def of(cls, data: bytes, limits: ParserLimits) -> Bounds:
        if not _ascii_compatible(data):
            # Counts of bytes bound nothing where "<" is not a byte of its own.
            return cls(sys.maxsize, sys.maxsize, sys.maxsize)
        nodes = _count(data, b"<")
        exact = False
        if nodes > limits.max_elements:
            # End tags hold "</"; counting them costs more, so only where it helps.
            nodes -= _count(data, b"</")
            declared = data.startswith(b"<?xml")
            nodes -= declared
            exact = not _count(data, b"<!") and _count(data, b"<?") == declared
        attributes = _count(data, b"=")
        declarations = _count(data, b"xmlns") if attributes else 0
        return cls(nodes, attributes, declarations, exact)

    def counted(self, limits: ParserLimits) -> frozenset[Count]:
        """What a document with these bounds could pass, and so must be counted.

        Raises ``LimitError`` at once where the bounds are exact and past a limit.
        """
        counts = set()
        if self.nodes > limits.max_elements:
            if self.exact_nodes:
                raise _too_many_elements(limits)
            counts.add(Count.NODES)
        if self.attributes > limits.max_attributes:
            counts.add(Count.ATTRIBUTES)
        if self.declarations > min(limits.max_namespaces, limits.max_namespaces_in_scope):
            counts.add(Count.NAMESPACES)
        return frozenset(counts)


def _ascii_compatible(data: bytes) -> bool:
    """Whether the document is in an encoding whose markup characters are single bytes."""
    head = data[:256]
    if b"\x00" in head[:4] or head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False  # UTF-16 or UTF-32
    declared = _DECLARED_ENCODING.match(head)
    return declared is None or _ASCII_SUPERSETS.fullmatch(declared.group(1).decode()) is not None


def _count(data: bytes, pattern: bytes) -> int:
    """``data.count(pattern)``, a window of 1 MB at a time.

    ``bytes.count`` holds the GIL; over 10 MB it keeps the worker's event loop from
    running for tens of milliseconds. Between windows the loop gets its turn. Each
    occurrence is counted in the window it starts in.
    """
    total = 0
    for start in range(0, len(data), _WINDOW):
        total += data.count(pattern, start, start + _WINDOW + len(pattern) - 1)
    return total


def _too_many_elements(limits: ParserLimits) -> LimitError:
    return LimitError(
        Reason.TOO_MANY_ELEMENTS,
        f"more than {limits.max_elements} elements, comments and processing instructions",
    )


class Counter:
    """Exact counts of one document's shape, from its parser's events, as it is parsed."""

    def __init__(self, limits: ParserLimits, counts: frozenset[Count]) -> None:
        self.limits = limits
        self.events = tuple(sorted({event for count in counts for event in count.value}))
        self._nodes = Count.NODES in counts
        self._attributes = Count.ATTRIBUTES in counts
        self.nodes = 0
        self.attributes = 0
        self.declarations = 0
        self._in_scope = 0

    def feed(self, events: object) -> None:
        """Count the parser's ``read_events()``; raise ``LimitError`` at the first limit."""
        for kind, node in events:  # type: ignore[attr-defined]
            if kind == "start":
                self._start(node)
            elif kind == "start-ns":
                self._declared()
            elif kind == "end-ns":
                self._in_scope -= 1
            else:
                self._node()

    def _start(self, element: etree._Element) -> None:
        if self._nodes:
            self._node()
        if self._attributes:
            self.attributes += len(element.attrib)
            if self.attributes > self.limits.max_attributes:
                raise LimitError(
                    Reason.TOO_MANY_ATTRIBUTES, f"more than {self.limits.max_attributes} attributes"
                )

    def _declared(self) -> None:
        self.declarations += 1
        self._in_scope += 1
        if self.declarations > self.limits.max_namespaces:
            raise LimitError(
                Reason.TOO_MANY_NAMESPACES,
                f"more than {self.limits.max_namespaces} namespace declarations",
            )
        if self._in_scope > self.limits.max_namespaces_in_scope:
            raise LimitError(
                Reason.TOO_MANY_NAMESPACES,
                f"more than {self.limits.max_namespaces_in_scope} namespaces in scope "
                "at one element",
            )

    def _node(self) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_elements:
            raise _too_many_elements(self.limits)


def check_tree(root: etree._Element, size: int, bounds: Bounds, limits: ParserLimits) -> None:
    """The limits no byte count bounds, on the parsed tree, each inside libxml2 (a walk
    in Python would cost as much as the parse)."""
    per_element = limits.max_attributes_per_element
    if bounds.attributes > per_element and root.xpath(f"boolean(//@*[{per_element + 1}])"):
        raise LimitError(
            Reason.TOO_MANY_ATTRIBUTES, f"an element has more than {per_element} attributes"
        )
    longest = limits.max_text_length
    # Four tests joined by "or", never one union of node sets: libxml2 merges those with
    # a duplicate check per node, in time that grows with the square of their size.
    if longest < LIBXML2_MAX_TEXT and size > longest:
        tests = " or ".join(
            f"{nodes}[string-length(.) > {longest}]"
            for nodes in ("//text()", "//@*", "//comment()", "//processing-instruction()")
        )
        if root.xpath(tests):
            raise LimitError(Reason.TEXT_TOO_LONG, f"a text is longer than {longest} characters")
