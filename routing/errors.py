"""Errors of the routing package.

RoutingPackageError
├── DirectoryError     the directory file cannot be loaded (names entry and field)
└── RouteError         a message cannot be routed; ``code`` is a reject reason code
"""

from __future__ import annotations

__all__ = ["DirectoryError", "RouteError", "RoutingPackageError"]


class RoutingPackageError(Exception):
    """Root of the routing package's errors."""


class DirectoryError(RoutingPackageError):
    """The directory cannot be loaded."""


class RouteError(RoutingPackageError):
    """No valid route. ``code`` is one of: author-unknown, author-not-authorized,
    reader-does-not-accept, no-route."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
