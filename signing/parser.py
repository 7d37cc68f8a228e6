"""The one hardened XML parser for untrusted input.

Everything that reads bytes from outside (messages, receipts, CLI files) goes through
``parse_untrusted``. It refuses any DOCTYPE, so no entity can be declared, expanded or
fetched; it never touches the network. It bounds the work a document can cause before
that work is done: the size before parsing, and the shape (depth, elements, attributes,
namespace declarations, text) while parsing, because canonicalization, copying and
validation later cost in proportion to the shape, some of it super-linearly (inclusive
c14n in the square of the namespaces in scope, any c14n in the square of the attributes
of one element). Failures are ``XmlError``: ``malformed-xml`` for syntax, DOCTYPE, size
and depth, ``LimitError`` with the reason of the limit for the rest; raised quickly and
in bounded memory, whatever the input.

Counting every node while parsing costs as much as the parse itself, so it is done only
where it could matter: counts of single bytes, taken first at a small share of a
parse's cost, bound the shape from above (every element starts with ``<``, every
attribute and declaration holds ``=``), and a document within the bounds is parsed
whole by libxml2 at full speed; the rest is parsed in chunks, counted exactly, and
abandoned at the first limit it passes, so memory never grows past the limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, TypedDict

from lxml import etree

from broker.errors import Reason
from signing.errors import LimitError, XmlError

__all__ = ["LIBXML2_MAX_DEPTH", "ParserLimits", "parse_canonical", "parse_untrusted"]

# libxml2 refuses deeper documents by itself unless huge_tree is on (it never is here).
LIBXML2_MAX_DEPTH: Final = 256
_CHUNK: Final = 64 * 1024
_EVENTS: Final = ("start", "end", "start-ns", "pi", "comment")


@dataclass(frozen=True)
class ParserLimits:
    """Bounds on untrusted XML; every one is refused before the work it would cost.

    ``max_depth`` counts the root as depth 1. Comments and processing instructions count
    as elements: each is a node of the tree like an element. Text lengths are in
    characters and apply to text, attribute values, comments and processing instructions.
    docs/security.md gives each limit's reason code and why its default is what it is.
    """

    max_bytes: int = 10 * 1024 * 1024
    max_depth: int = LIBXML2_MAX_DEPTH
    max_elements: int = 200_000
    max_attributes: int = 200_000
    max_attributes_per_element: int = 64
    max_namespaces: int = 1024
    max_namespaces_in_scope: int = 64
    max_text_length: int = 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if not 1 <= self.max_depth <= LIBXML2_MAX_DEPTH:
            raise ValueError(f"max_depth must be between 1 and {LIBXML2_MAX_DEPTH}")
        for name in (
            "max_elements",
            "max_attributes",
            "max_attributes_per_element",
            "max_namespaces",
            "max_namespaces_in_scope",
            "max_text_length",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


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


@dataclass(frozen=True, slots=True)
class _Bounds:
    """Upper bounds of a document's shape, from counts of single bytes."""

    nodes: int  # elements, comments, PIs: each starts with "<"
    attributes: int  # attributes and namespace declarations: each holds one "="
    declarations: int  # each namespace declaration holds "xmlns"

    @classmethod
    def of(cls, data: bytes) -> _Bounds:
        attributes = data.count(b"=")
        return cls(data.count(b"<"), attributes, data.count(b"xmlns") if attributes else 0)

    def within(self, limits: ParserLimits) -> bool:
        """Whether no document with these bounds can pass a limit but per-element ones."""
        return (
            self.nodes <= limits.max_elements
            and self.attributes <= limits.max_attributes
            and self.declarations <= min(limits.max_namespaces, limits.max_namespaces_in_scope)
        )


def _check_depth(root: etree._Element, max_depth: int) -> None:
    stack: list[tuple[etree._Element, int]] = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > max_depth:
            raise XmlError(f"document deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in element)


def _check_whole(root: etree._Element, data: bytes, bounds: _Bounds, limits: ParserLimits) -> None:
    """The limits the byte counts could not rule out, on a tree parsed whole."""
    per_element = limits.max_attributes_per_element
    # Both are evaluated inside libxml2: a walk in Python would cost as much as the parse.
    if bounds.attributes > per_element and root.xpath(f"boolean(//@*[{per_element + 1}])"):
        raise LimitError(
            Reason.TOO_MANY_ATTRIBUTES, f"an element has more than {per_element} attributes"
        )
    longest = limits.max_text_length
    if len(data) > longest and root.xpath(
        f"boolean((//text() | //@* | //comment() | //processing-instruction())"
        f"[string-length(.) > {longest}])"
    ):
        raise LimitError(
            Reason.TEXT_TOO_LONG, f"a text is longer than {limits.max_text_length} characters"
        )


class _Counter:
    """Exact counts of one document's shape, taken from the parser's events."""

    def __init__(self, limits: ParserLimits) -> None:
        self.limits = limits
        self.nodes = 0
        self.attributes = 0
        self.declarations = 0
        self.pending = 0  # declarations of the element whose start comes next
        self.in_scope = [0]  # declarations in scope, per open element

    def event(self, kind: str, node: object) -> None:
        if kind == "start-ns":
            self._declared()
        elif kind == "start":
            assert isinstance(node, etree._Element)
            self._started(node)
        elif kind == "end":
            assert isinstance(node, etree._Element)
            self._ended(node)
        else:
            assert isinstance(node, etree._Comment | etree._ProcessingInstruction)
            self._node()
            self._text(node.text)

    def _declared(self) -> None:
        self.declarations += 1
        self.pending += 1
        if self.declarations > self.limits.max_namespaces:
            raise LimitError(
                Reason.TOO_MANY_NAMESPACES,
                f"more than {self.limits.max_namespaces} namespace declarations",
            )

    def _started(self, element: etree._Element) -> None:
        self._node()
        scope = self.in_scope[-1] + self.pending
        self.pending = 0
        self.in_scope.append(scope)
        if scope > self.limits.max_namespaces_in_scope:
            raise LimitError(
                Reason.TOO_MANY_NAMESPACES,
                f"more than {self.limits.max_namespaces_in_scope} namespaces in scope "
                "at one element",
            )
        count = len(element.attrib)
        if count > self.limits.max_attributes_per_element:
            raise LimitError(
                Reason.TOO_MANY_ATTRIBUTES,
                f"an element has more than {self.limits.max_attributes_per_element} attributes",
            )
        self.attributes += count
        if self.attributes > self.limits.max_attributes:
            raise LimitError(
                Reason.TOO_MANY_ATTRIBUTES, f"more than {self.limits.max_attributes} attributes"
            )
        for value in element.attrib.values():
            self._text(str(value))

    def _ended(self, element: etree._Element) -> None:
        self.in_scope.pop()
        self._text(element.text)
        # The tails of the children are complete once their parent ends.
        for child in element:
            self._text(child.tail)

    def _node(self) -> None:
        self.nodes += 1
        if self.nodes > self.limits.max_elements:
            raise LimitError(
                Reason.TOO_MANY_ELEMENTS,
                f"more than {self.limits.max_elements} elements, comments and processing "
                "instructions",
            )

    def _text(self, text: str | None) -> None:
        if text is not None and len(text) > self.limits.max_text_length:
            raise LimitError(
                Reason.TEXT_TOO_LONG,
                f"a text is longer than {self.limits.max_text_length} characters",
            )


def _parse_counting(data: bytes, limits: ParserLimits) -> etree._Element:
    """Parse in chunks, counting exactly, and stop at the first limit passed."""
    parser = etree.XMLPullParser(events=_EVENTS, **_OPTIONS)
    counter = _Counter(limits)
    for start in range(0, len(data), _CHUNK):
        parser.feed(data[start : start + _CHUNK])
        for kind, node in parser.read_events():
            counter.event(kind, node)
    root: etree._Element = parser.close()
    for kind, node in parser.read_events():
        counter.event(kind, node)
    return root


def _parse(data: bytes, limits: ParserLimits) -> etree._Element:
    bounds = _Bounds.of(data)
    if not bounds.within(limits):
        return _parse_counting(data, limits)
    root = etree.fromstring(data, parser=_new_parser())
    if root is not None:
        _check_whole(root, data, bounds, limits)
    return root


def parse_untrusted(data: bytes, limits: ParserLimits = ParserLimits()) -> etree._Element:
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
