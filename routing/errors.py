"""Errors of the routing package, in the one tree of `broker.errors` (drawn there).

RoutingError
├── DirectoryError     the directory file cannot be loaded (names entry and field)
└── RouteError         a message cannot be routed; also a `broker.errors.Rejection`
                       (author-unknown, author-not-authorized, reader-does-not-accept,
                       no-route)
"""

from __future__ import annotations

from broker.errors import Rejection, XBrokerError

__all__ = ["DirectoryError", "RouteError", "RoutingError"]


class RoutingError(XBrokerError):
    """Root of the routing package's errors."""


class DirectoryError(RoutingError):
    """The directory cannot be loaded."""


class RouteError(RoutingError, Rejection):
    """No valid route; ``reason`` says why."""
