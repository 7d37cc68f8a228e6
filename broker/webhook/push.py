"""One HTTP push of a message to a webhook endpoint, and how it ended.

The client is bounded on every side: connect and read timeouts from the settings, an
overall deadline of both together (a server that drips one byte at a time cannot hold
a push forever), no redirects (a redirect is not an answer from the registered
endpoint), and no proxy but the one configured (the environment of the broker process
is not configuration). Endpoints are verified against the system trust store or
``webhook_ca_file``.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from broker.errors import DeliveryFailure
from broker.settings import Settings
from broker.webhook.signature import WebhookSecret, signed_headers
from monitoring.labels import WebhookOutcome

__all__ = ["REFUSAL_HEADER", "PushResult", "Pusher"]

REFUSAL_HEADER = "xbroker-refusal"
"""With a 422, why the receiver cannot open its sealed copy (docs/webhooks.md)."""
_SEAL_FAILURES = {
    f.value: f for f in (DeliveryFailure.COPY_SEAL_KEY_UNKNOWN, DeliveryFailure.COPY_SEAL_INVALID)
}


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: WebhookOutcome
    status: int | None = None
    error: str = ""
    refusal: DeliveryFailure | None = None  # 422 + xbroker-refusal: the seal does not open

    @property
    def delivered(self) -> bool:
        return self.outcome is WebhookOutcome.SUCCESS

    @property
    def gone(self) -> bool:
        """410 Gone: the agency retired the endpoint; retrying cannot help."""
        return self.status == 410


class Pusher:
    """POSTs signed messages; one per deliverer, sharing its connection pool."""

    def __init__(self, settings: Settings) -> None:
        verify: ssl.SSLContext | bool = True
        if settings.webhook_ca_file is not None:
            verify = ssl.create_default_context(cafile=str(settings.webhook_ca_file))
        self._deadline = (
            settings.webhook_connect_timeout_seconds + settings.webhook_read_timeout_seconds
        )
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(
                settings.webhook_read_timeout_seconds,
                connect=settings.webhook_connect_timeout_seconds,
            ),
            verify=verify,
            proxy=settings.webhook_proxy,
            trust_env=False,
            follow_redirects=False,
        )

    async def push(
        self,
        url: str,
        secret: WebhookSecret,
        webhook_id: str,
        body: bytes,
        *,
        content_type: str = "application/xml",
        headers: Mapping[str, str] | None = None,
    ) -> PushResult:
        """POST ``body``; the result says how the endpoint answered (never raises)."""
        request_headers = {
            **signed_headers(secret, webhook_id, int(time.time()), body),
            "content-type": content_type,
            **(headers or {}),
        }
        try:
            async with asyncio.timeout(self._deadline):
                response = await self._client.post(url, content=body, headers=request_headers)
        except (TimeoutError, httpx.TimeoutException) as exc:
            return PushResult(WebhookOutcome.TIMEOUT, error=f"timeout: {type(exc).__name__}")
        except httpx.HTTPError as exc:
            return PushResult(WebhookOutcome.CONNECTION_ERROR, error=type(exc).__name__)
        if 200 <= response.status_code < 300:
            return PushResult(WebhookOutcome.SUCCESS, response.status_code)
        refusal = _SEAL_FAILURES.get(response.headers.get(REFUSAL_HEADER, "").strip())
        if response.status_code == 422 and refusal is not None:
            return PushResult(
                WebhookOutcome.HTTP_ERROR, 422, f"HTTP 422: {refusal.value}", refusal=refusal
            )
        return PushResult(
            WebhookOutcome.HTTP_ERROR, response.status_code, f"HTTP {response.status_code}"
        )

    async def close(self) -> None:
        await self._client.aclose()
