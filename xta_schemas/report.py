"""The detailed validation report, built only when lxml has already said "invalid".

lxml validates on the hot path because it is fast; its messages are terse. When a
message fails, xmlschema validates it again to say, for each issue, the line, the XPath of
the element and the reason. xmlschema loads the same files through the same resolution
table, offline. If xmlschema cannot help (it fails to build or finds nothing), lxml's
error log is the report.

Reports go to the sender in a receipt and into logs, so they must not carry the
message's content: values the validators quote ("'abc' is not a valid value") are
replaced by ``'[value]'``. What stays is where (line, path) and which rule failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import xmlschema
from lxml import etree

from .errors import ValidationIssue

__all__ = ["MAX_ISSUES", "REDACTED", "DetailedReporter", "issues_from_lxml", "redact"]

MAX_ISSUES = 20
REDACTED = "'[value]'"

# How libxml2 quotes an offending value: "Element 'x': 'VALUE' is not a valid value of
# ...", "[facet 'pattern'] The value 'VALUE' is not accepted by ...".
_LXML_VALUE = re.compile(
    r"(: |The value )'.*?'(?= is not (?:a valid value|accepted|an element))", re.DOTALL
)


def redact(reason: str, values: Iterable[str] = ()) -> str:
    """``reason`` without the quoted ``values`` nor any value libxml2 quoted."""
    for value in sorted({v for raw in values for v in _forms(raw)}, key=len, reverse=True):
        for quoted in (repr(value), f"'{value}'", f'"{value}"'):
            reason = reason.replace(quoted, REDACTED)
    return _LXML_VALUE.sub(lambda m: f"{m.group(1)}{REDACTED}", reason)


def _forms(raw: str) -> tuple[str, ...]:
    """A value as written, stripped, and whitespace-collapsed (as validators see it)."""
    return tuple(v for v in {raw, raw.strip(), " ".join(raw.split())} if v)


def issues_from_lxml(log: etree._ListErrorLog) -> tuple[ValidationIssue, ...]:
    """The lxml error log as issues; the fallback report."""
    return tuple(
        ValidationIssue(
            line=entry.line or None, path=entry.path or "", reason=redact(entry.message)
        )
        for entry in islice(log, MAX_ISSUES)
    )


def _reason(error: xmlschema.XMLSchemaValidationError) -> str:
    """xmlschema's reason, saying that the value was at fault, without the value."""
    reason = error.reason or str(error.message)
    value = error.obj
    if isinstance(value, str) and repr(value) not in reason:
        reason = f"value {value!r}: {reason}"
    return redact(reason, _values(error))


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
        if self.prepare() is not None:
            return issues_from_lxml(log)
        try:
            errors = islice(
                self._compiled().iter_errors(root, namespaces=self._namespaces), MAX_ISSUES
            )
            issues = tuple(
                ValidationIssue(
                    line=error.sourceline if isinstance(error.sourceline, int) else None,
                    path=error.path or "",
                    reason=_reason(error),
                )
                for error in errors
            )
        except (xmlschema.XMLSchemaException, OSError, ValueError, TypeError):
            issues = ()
        return issues or issues_from_lxml(log)


def _values(error: xmlschema.XMLSchemaValidationError) -> list[str]:
    """The content the error may quote: the element's text and attributes, the value."""
    values = [error.obj] if isinstance(error.obj, str) else []
    elem = error.elem
    if elem is not None:
        values += [elem.text or "", *(str(v) for v in elem.attrib.values())]
    return values
