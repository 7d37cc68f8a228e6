"""The HTTP API for portals that do not speak AMQP (see `broker.http_api.app`)."""

from broker.http_api.app import ApiLimits, IngressQueue, build_api
from broker.http_api.auth import Authenticator, TokenTable, good_standing, hash_token
from broker.http_api.guard import ConnectionLimits
from broker.http_api.ingress import IngressPublisher
from broker.http_api.running import RunningApi, start_api
from broker.http_api.server import ApiServer, ApiTlsFiles, serve_api

__all__ = [
    "ApiLimits",
    "ApiServer",
    "ApiTlsFiles",
    "Authenticator",
    "ConnectionLimits",
    "IngressPublisher",
    "IngressQueue",
    "RunningApi",
    "TokenTable",
    "build_api",
    "good_standing",
    "hash_token",
    "serve_api",
    "start_api",
]
