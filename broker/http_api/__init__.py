"""The HTTP API for portals that do not speak AMQP (see `broker.http_api.app`)."""

from broker.http_api.app import ApiLimits, Ingress, build_api
from broker.http_api.auth import Authenticator, TokenTable, good_standing, hash_token
from broker.http_api.ingress import IngressPublisher
from broker.http_api.running import RunningApi, start_api
from broker.http_api.server import ApiServer, TlsFiles, serve_api

__all__ = [
    "ApiLimits",
    "ApiServer",
    "Authenticator",
    "Ingress",
    "IngressPublisher",
    "RunningApi",
    "TlsFiles",
    "TokenTable",
    "build_api",
    "good_standing",
    "hash_token",
    "serve_api",
    "start_api",
]
