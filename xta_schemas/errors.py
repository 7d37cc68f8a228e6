"""Errors of the standards package, in the one tree of `broker.errors` (drawn there).

Error tree::

    StandardsError
    ├── StandardLoadError     a standard cannot be loaded: manifest, XSD or reference broken
    └── MessageError          a message does not fit the standards; also a
                              `broker.errors.Rejection` (unknown-message-type,
                              unsupported-version, schema-invalid, header-invalid;
                              author-unknown and no-route where the directory knows no
                              party a free-text name names)
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.errors import Reason, Rejection, XBrokerError

__all__ = [
    "MessageError",
    "StandardLoadError",
    "StandardsError",
    "ValidationIssue",
]


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One finding of schema validation, located in the message."""

    line: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line} " if self.line is not None else ""
        return f"{where}{self.path}: {self.reason}"


class StandardsError(XBrokerError):
    """Root of the errors this package raises on purpose."""


class StandardLoadError(StandardsError):
    """A standard cannot be loaded; a configuration problem, never the sender's fault."""


class MessageError(StandardsError, Rejection):
    """A message does not fit: unknown type, retired version, bad header or schema."""

    def __init__(
        self, reason: Reason, detail: str, issues: tuple[ValidationIssue, ...] = ()
    ) -> None:
        super().__init__(reason, detail)
        self.issues = issues
