"""The agency directory and the routing rules. Knows nothing of AMQP or XML."""

from routing.directory import (
    Agency,
    AmqpEndpoint,
    Directory,
    RegisteredCertificate,
    Subscription,
    WebhookEndpoint,
    XtaEndpoint,
    read_parties,
)
from routing.errors import DirectoryError, RouteError, RoutingError
from routing.rules import Recipient, Role, RoutingInput, route

__all__ = [
    "Agency",
    "AmqpEndpoint",
    "Directory",
    "DirectoryError",
    "Recipient",
    "RegisteredCertificate",
    "Role",
    "RouteError",
    "RoutingError",
    "RoutingInput",
    "Subscription",
    "WebhookEndpoint",
    "XtaEndpoint",
    "read_parties",
    "route",
]
