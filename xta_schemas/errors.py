"""Errors of the standards package.

Error tree::

    StandardError
    ├── StandardLoadError     a standard cannot be loaded: manifest, XSD or reference broken
    └── MessageError          a message does not fit the standards; ``.code`` is a Reason code
                              (unknown-message-type, unsupported-version, schema-invalid,
                              header-invalid)

``MessageError.code`` carries the value of ``broker.errors.Reason`` as a plain string so
that this package need not import the service; the pipeline maps it with
``Reason(exc.code)``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "HEADER_INVALID",
    "SCHEMA_INVALID",
    "UNKNOWN_MESSAGE_TYPE",
    "UNSUPPORTED_VERSION",
    "MessageError",
    "StandardError",
    "StandardLoadError",
    "ValidationIssue",
]

UNKNOWN_MESSAGE_TYPE = "unknown-message-type"
UNSUPPORTED_VERSION = "unsupported-version"
SCHEMA_INVALID = "schema-invalid"
HEADER_INVALID = "header-invalid"


@dataclass(frozen=True, slots=True)
class ValidationIssue:
    """One finding of schema validation, located in the message."""

    line: int | None
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line} " if self.line is not None else ""
        return f"{where}{self.path}: {self.reason}"


class StandardError(Exception):
    """Root of the errors this package raises on purpose."""


class StandardLoadError(StandardError):
    """A standard cannot be loaded; a configuration problem, never the sender's fault."""


class MessageError(StandardError):
    """A message does not fit: unknown type, retired version, bad header or schema."""

    def __init__(self, code: str, detail: str, issues: tuple[ValidationIssue, ...] = ()) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.issues = issues
