"""Standard Webhooks signatures: what a receiver checks before it trusts a push.

The receiver verifies ``webhook-signature`` over ``"<webhook-id>.<webhook-timestamp>.<body>"``
with the shared secret, and rejects stale timestamps, so a captured request can neither
be altered nor replayed later. ``webhook-id`` is the nachrichtenUUID: the same message
pushed twice (a retry after a lost answer) carries the same id, and the receiver
deduplicates by it. See https://www.standardwebhooks.com/.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from broker.errors import ConfigurationError

__all__ = ["SECRET_PREFIX", "WebhookSecret", "signed_headers"]

SECRET_PREFIX = "whsec_"


class WebhookSecret:
    """A shared secret in the ``whsec_<base64>`` format of Standard Webhooks."""

    __slots__ = ("_key",)

    def __init__(self, text: str) -> None:
        encoded = text.strip().removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigurationError("a webhook secret must be whsec_<base64>") from exc
        if len(key) < 16:
            raise ConfigurationError("a webhook secret must hold at least 16 bytes")
        self._key = key

    def __repr__(self) -> str:  # never print the key
        return "WebhookSecret(<hidden>)"

    def sign(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` value: ``v1,<base64 HMAC-SHA256>``."""
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        digest = hmac.new(self._key, signed, hashlib.sha256).digest()
        return "v1," + base64.b64encode(digest).decode("ascii")


def signed_headers(
    secret: WebhookSecret, webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers of one push."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": secret.sign(webhook_id, timestamp, body),
    }
