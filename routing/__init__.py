"""The agency directory and the routing rules. Knows nothing of AMQP or XML."""

from routing.agency import (
    Agency,
    AmqpEndpoint,
    RegisteredCertificate,
    Subscription,
    WebhookEndpoint,
    XtaEndpoint,
)
from routing.certificates import CertificateFiles
from routing.directory import Directory
from routing.directory_file import read_parties
from routing.errors import DirectoryError, RouteError, RoutingError
from routing.rules import Recipient, Role, RoutingInput, route

__all__ = [
    "Agency",
    "AmqpEndpoint",
    "CertificateFiles",
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
