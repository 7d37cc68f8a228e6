"""The HTTP API as the broker runs it: built from the settings, served, stopped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from broker.app import Parts, Records
from broker.errors import ConfigurationError
from broker.http_api.app import ApiLimits, build_api
from broker.http_api.auth import Authenticator, StandingCheck, TokenTable, good_standing
from broker.http_api.guard import ConnectionLimits
from broker.http_api.ingress import IngressPublisher
from broker.http_api.server import ApiServer, ApiTlsFiles, serve_api
from broker.settings import Settings
from signing import SigningError, TrustStore
from signing.certs import load_certificates
from signing.crl import CrlFolder

__all__ = ["RunningApi", "client_standing", "connection_limits", "start_api"]


@dataclass(slots=True)
class RunningApi:
    server: ApiServer
    ingress: IngressPublisher

    @property
    def url(self) -> str:
        return self.server.url

    async def stop(self) -> None:
        await self.server.stop()
        await self.ingress.close()


async def start_api(parts: Parts, records: Records) -> RunningApi:
    """Serve the API on ``api_host:api_port``, journaling to ``records``."""
    settings = parts.settings
    tokens = TokenTable.from_file(settings.api_tokens_file) if settings.api_tokens_file else None
    tls = None
    if settings.api_tls_cert is not None or settings.api_tls_key is not None:
        if settings.api_tls_cert is None or settings.api_tls_key is None:
            raise ConfigurationError("api_tls_cert and api_tls_key go together")
        tls = ApiTlsFiles(settings.api_tls_cert, settings.api_tls_key, settings.api_tls_client_ca)
    if tokens is None and (tls is None or tls.client_ca is None):
        raise ConfigurationError(
            "the HTTP API needs api_tokens_file or api_tls_client_ca: nobody could log in"
        )
    ingress = IngressPublisher(
        settings.rabbitmq_urls, confirm_timeout=settings.confirm_timeout_seconds
    )
    await ingress.start()
    app = build_api(
        status=records.status,
        ingress=ingress,
        catalog=parts.catalog,
        authenticate=Authenticator(
            tokens or TokenTable({}),
            parts.directory.certificate_registered,
            client_standing(tls.client_ca, parts) if tls and tls.client_ca else None,
        ),
        limits=ApiLimits(
            max_body_bytes=settings.max_message_bytes,
            xml=settings.parser_limits(),
            queue_limit=settings.ingress_queue_limit,
            retry_after_seconds=settings.api_retry_after_seconds,
        ),
        journal=records.recorder(),
        opener=parts.sealer().open,
    )
    try:
        server = await serve_api(
            app, settings.api_host, settings.api_port, tls, connection_limits(settings)
        )
    except BaseException:
        await ingress.close()
        raise
    return RunningApi(server, ingress)


def client_standing(client_ca: Path, parts: Parts) -> StandingCheck:
    """Client certificates of ``client_ca``, checked against the CRL folder of signatures."""
    try:
        trust = TrustStore(load_certificates(client_ca), CrlFolder(parts.settings.crl_dir))
    except (OSError, ValueError, SigningError) as exc:
        raise ConfigurationError(f"client CA {client_ca}: {exc}") from exc
    return good_standing(trust, parts.verifier().policy)


def connection_limits(settings: Settings) -> ConnectionLimits:
    """How long a request may take to arrive and how many connections are held, for the
    HTTP API and the XTA endpoint alike."""
    return ConnectionLimits(
        header_timeout=settings.api_header_timeout_seconds,
        body_timeout=settings.api_body_timeout_seconds,
        max_connections=settings.api_max_connections,
        max_per_client=settings.api_max_connections_per_client,
    )
