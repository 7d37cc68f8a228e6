"""The detailed validation report, built only when lxml has already said "invalid".

lxml validates on the hot path because it is fast; its messages are terse. When a
message fails, xmlschema validates it again to say, for each issue, the line, the XPath of
the element and the reason. xmlschema loads the same files through the same resolution
table, offline. If xmlschema cannot help (it fails to build or finds nothing), lxml's
error log is the report.

xmlschema walks the document in Python, at about a hundred times lxml's cost: for a
9.5 MB message invalid at its end, seconds of CPU. A document of more than
``MAX_REPORT_ELEMENTS`` elements therefore gets lxml's error log as its report (line,
path and reason too, in libxml2's words), so no message costs more than a bounded
multiple of its validation.

Reports go to the sender in a receipt and into logs, so they must not carry the
message's content: values the validators quote ("'abc' is not a valid value") are
replaced by ``'[value]'``, and so is any quoted text in an xmlschema reason that is a
value somewhere in the document, since some reasons quote a value from elsewhere (an
IDREF whose ID is missing is reported at the root). What stays is where (line, path)
and which rule failed.

They are read by the sender's people, in the words of XML Schema: what the validators
say in Python's (``<class 'elementpath.datatypes.datetime.DateTime10'>``, a facet bound
as ``DateTime10(2000, 1, 1, 0, 0, 0)``, "invalid literal for int()") is said with the
XSD type (``xs:dateTime``) and the lexical value of the standard (``'2000-01-01T00:00:00'``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

import elementpath.datatypes
import xmlschema
from lxml import etree
from xmlschema.validators import XsdEnumerationFacets, XsdFacet

from .errors import ValidationIssue

__all__ = [
    "MAX_ISSUES",
    "MAX_REPORT_ELEMENTS",
    "REDACTED",
    "DetailedReporter",
    "document_values",
    "in_schema_words",
    "issues_from_lxml",
    "redact",
]

MAX_ISSUES = 20
MAX_REPORT_ELEMENTS = 20_000
REDACTED = "'[value]'"

# How libxml2 quotes an offending value: "Element 'x': 'VALUE' is not a valid value of
# ...", "[facet 'pattern'] The value 'VALUE' is not accepted by ...", "The value 'VALUE'
# is less than ...", "… has more digits …", "The actual value 'VALUE' does not match the
# fixed value constraint …", and an identity constraint's values as a key-sequence
# ("Duplicate key-sequence ['VALUE'] in …", "No match found for key-sequence ['VALUE']
# of keyref …").
_LXML_VALUE = re.compile(r"(: |[Vv]alue )'.*?'(?= (?:is|has|does) )", re.DOTALL)
_LXML_KEYS = re.compile(r"(key-sequence )\[.*?\](?= (?:in|of) )", re.DOTALL)
# A quoted text in a reason, either quote.
_QUOTED = re.compile(r"'([^']*)'|\"([^\"]*)\"")


def redact(reason: str, values: Iterable[str] = (), document: Collection[str] = frozenset()) -> str:
    """``reason`` without the quoted ``values``, any value libxml2 quoted, nor any quoted
    text that is one of the ``document``'s values (``document_values``)."""
    for value in sorted({v for raw in values for v in _forms(raw)}, key=len, reverse=True):
        for quoted in (repr(value), f"'{value}'", f'"{value}"'):
            reason = reason.replace(quoted, REDACTED)
    reason = _LXML_VALUE.sub(lambda m: f"{m.group(1)}{REDACTED}", reason)
    reason = _LXML_KEYS.sub(lambda m: f"{m.group(1)}[{REDACTED}]", reason)
    if not document:
        return reason

    def scrub(match: re.Match[str]) -> str:
        quoted = match.group(1) if match.group(1) is not None else match.group(2)
        return REDACTED if quoted in document else match.group(0)

    return _QUOTED.sub(scrub, reason)


def document_values(root: etree._Element) -> frozenset[str]:
    """Every text and attribute value of ``root``'s document, in each form a validator may
    quote it: as written, stripped, whitespace-collapsed, and each of its whitespace-
    separated tokens (an IDREFS, a list type). A reason about a value found elsewhere in
    the document (an IDREF without its ID, a keyref without its key) quotes it where the
    element's own values do not hold it."""
    values: set[str] = set()
    found = root.xpath("//text() | //@*")
    assert isinstance(found, list)  # a node-set
    for node in found:
        raw = str(node)
        values.update(_forms(raw))
        values.update(raw.split())
    return frozenset(values)


_TYPED = elementpath.datatypes.AnyAtomicType
# The XSD type of each typed value class the validators use: elementpath's datatypes
# carry their XSD name, and xs:decimal is Python's Decimal.
_TYPED_VALUES = {
    cls.__name__: f"xs:{cls.name}"
    for cls in vars(elementpath.datatypes).values()
    if isinstance(cls, type)
    and issubclass(cls, _TYPED)
    and isinstance(getattr(cls, "name", None), str)
    and cls is not _TYPED
} | {"Decimal": "xs:decimal"}
# Python's built-in classes stand for the XSD types they implement.
_XSD_TYPES = _TYPED_VALUES | {
    "str": "xs:string",
    "int": "xs:integer",
    "float": "xs:double",
    "bool": "xs:boolean",
}
_CLASS = re.compile(r"<class '(?:\w+\.)*(\w+)'>")
# A typed value's repr, ``DateTime10(2000, 1, 1, 0, 0, 0)``, ``Decimal('1.5')``: with
# one level of nested parentheses (a time zone's).
_VALUE_REPR = re.compile(
    r"\b(" + "|".join(sorted(_TYPED_VALUES, key=len, reverse=True)) + r")\((?:[^()]|\([^()]*\))*\)"
)
# Python's words for a literal that does not convert.
_PYTHON_WORDS = (
    (re.compile(r"invalid literal for int\(\) with base \d+: (.*)"), r"\1 is not an integer"),
    (re.compile(r"could not convert string to float: (.*)"), r"\1 is not a number"),
)


# An object's default repr (xmlschema's "for <…FieldValueSelector object at 0x…>") says
# nothing to a sender; an identity constraint is named as the schema names it.
_OBJECT = re.compile(r"(?: for)? <(?:\w+\.)*\w+ object at 0x[0-9a-fA-F]+>")
_IDENTITY = re.compile(r"Xsd(Key|Keyref|Unique)\(name=('[^']*')\)")


def in_schema_words(reason: str) -> str:
    """``reason`` with no Python class or value repr left: XSD type names instead.

    A value repr that is still there is the message's content, which the caller did not
    know as such: it becomes "a value of" its XSD type, never its text.
    """
    reason = _OBJECT.sub("", reason)
    reason = _IDENTITY.sub(lambda m: f"xs:{m.group(1).lower()} {m.group(2)}", reason)
    for pattern, words in _PYTHON_WORDS:
        reason = pattern.sub(words, reason)
    reason = _VALUE_REPR.sub(lambda m: f"a value of {_TYPED_VALUES[m.group(1)]}", reason)
    return _CLASS.sub(lambda m: _XSD_TYPES.get(m.group(1), "its type"), reason)


def _forms(raw: str) -> tuple[str, ...]:
    """A value as written, stripped, and whitespace-collapsed (as validators see it)."""
    return tuple(v for v in {raw, raw.strip(), " ".join(raw.split())} if v)


def issues_from_lxml(log: etree._ListErrorLog) -> tuple[ValidationIssue, ...]:
    """The lxml error log as issues; the fallback report."""
    return tuple(
        ValidationIssue(
            line=entry.line or None,
            path=entry.path or "",
            reason=in_schema_words(redact(entry.message)),
        )
        for entry in islice(log, MAX_ISSUES)
    )


def _reason(error: xmlschema.XMLSchemaValidationError, document: Collection[str]) -> str:
    """xmlschema's reason, saying that the value was at fault, without the value, in the
    words of XML Schema."""
    reason = error.reason or str(error.message)
    for bound in _standard_values(error.validator):
        reason = reason.replace(repr(bound), repr(str(bound)))
    value = error.obj
    if isinstance(value, str) and repr(value) not in reason:
        reason = f"value {value!r}: {reason}"
    # A typed value of the message's (DateTime10(…)) still in the reason becomes "a value
    # of xs:dateTime" there: never its text.
    return in_schema_words(redact(reason, _values(error), document))


def _standard_values(validator: object) -> list[object]:
    """Values the standard sets (a facet's bound, an enumeration) as the validator holds
    them: typed objects, whose repr a reason shows in Python's words."""
    if isinstance(validator, XsdEnumerationFacets):
        return [v for v in validator.enumeration if isinstance(v, Decimal | _TYPED)]
    if isinstance(validator, XsdFacet):
        bound = getattr(validator, "value", None)
        return [bound] if isinstance(bound, Decimal | _TYPED) else []
    return []


class DetailedReporter:
    """Builds xmlschema's view of one standard on first use and keeps it for the next."""

    def __init__(
        self,
        entries: tuple[Path, ...],
        table: Mapping[str, Path],
        namespaces: Mapping[str, str],
    ) -> None:
        self._entries = entries
        self._table = dict(table)
        self._namespaces = dict(namespaces)
        self._schema: xmlschema.XMLSchema | None = None
        # Why xmlschema could not build its view, once it failed: a build takes seconds
        # for a large standard, so it is not tried again for every invalid message.
        self._problem: str | None = None

    def _map_uri(self, uri: str) -> str:
        target = self._table.get(uri)
        return str(target) if target is not None else uri

    def _compiled(self) -> xmlschema.XMLSchema:
        if self._schema is None:
            sources: list[Any] = [str(entry) for entry in self._entries]
            self._schema = xmlschema.XMLSchema(
                sources[0] if len(sources) == 1 else sources,
                uri_mapper=self._map_uri,
                allow="local",
                defuse="always",
            )
        return self._schema

    @property
    def ready(self) -> bool:
        """Whether the next report needs no build: xmlschema's view exists or cannot."""
        return self._schema is not None or self._problem is not None

    def prepare(self) -> str | None:
        """Build xmlschema's view now; None when ready, else why reports fall back to lxml.

        For a release of XJustiz's size this takes seconds, which the first invalid
        message would otherwise wait for. A failed build is remembered, not retried.
        """
        if self._problem is None and self._schema is None:
            try:
                self._compiled()
            except (xmlschema.XMLSchemaException, OSError, ValueError, TypeError) as exc:
                self._problem = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return self._problem

    def issues(self, root: etree._Element, log: etree._ListErrorLog) -> tuple[ValidationIssue, ...]:
        """At most MAX_ISSUES issues explaining why ``root`` is invalid."""
        if _larger_than(root, MAX_REPORT_ELEMENTS) or self.prepare() is not None:
            return issues_from_lxml(log)
        try:
            errors = islice(
                self._compiled().iter_errors(root, namespaces=self._namespaces), MAX_ISSUES
            )
            # Within MAX_REPORT_ELEMENTS, collecting them costs less than xmlschema's walk.
            document = document_values(root)
            issues = tuple(
                ValidationIssue(
                    line=error.sourceline if isinstance(error.sourceline, int) else None,
                    path=error.path or "",
                    reason=_reason(error, document),
                )
                for error in errors
            )
        except (xmlschema.XMLSchemaException, OSError, ValueError, TypeError):
            issues = ()
        return issues or issues_from_lxml(log)


def _larger_than(root: etree._Element, elements: int) -> bool:
    # Stops at the first element past the count, so asking costs at most the count.
    return next(islice(root.iter(etree.Element), elements, None), None) is not None


def _values(error: xmlschema.XMLSchemaValidationError) -> list[str]:
    """The content the error may quote: the element's text and attributes, the value."""
    values = [error.obj] if isinstance(error.obj, str) else []
    elem = error.elem
    if elem is not None:
        values += [elem.text or "", *(str(v) for v in elem.attrib.values())]
    return values
