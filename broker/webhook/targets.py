"""Which inboxes the webhook deliverer consumes, and where their copies go.

One `WebhookTarget` per inbox of a webhook agency (its test inbox is a second target
with the test URL), each with the signing secret read from the variable the directory
names. A missing or malformed secret stops the start, so no endpoint is pushed to
unsigned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, HeadersType

from broker.amqp import topology
from broker.errors import ConfigurationError
from broker.webhook.signature import WebhookSecret
from routing import Agency, Directory, WebhookEndpoint

__all__ = ["WebhookTarget", "message_headers", "webhook_agencies", "webhook_targets"]


def webhook_agencies(directory: Directory) -> list[Agency]:
    """Agencies that receive messages through a webhook."""
    return [
        a for a in directory if isinstance(a.endpoint, WebhookEndpoint) and topology.has_inbox(a)
    ]


@dataclass(slots=True)
class WebhookTarget:
    """One queue the deliverer consumes and the URL its copies go to."""

    kennung: str
    test: bool
    url: str
    secret: WebhookSecret
    queue: AbstractQueue | None = None
    tag: str | None = None

    @property
    def inbox(self) -> str:
        return topology.agency_queue(self.kennung, test=self.test)


def webhook_targets(directory: Directory, secrets: Mapping[str, str]) -> list[WebhookTarget]:
    """Every webhook inbox of ``directory``; raises if a secret is missing or malformed."""
    targets: list[WebhookTarget] = []
    for agency in webhook_agencies(directory):
        endpoint = agency.endpoint
        assert isinstance(endpoint, WebhookEndpoint)
        text = secrets.get(endpoint.secret_env)
        if not text:
            raise ConfigurationError(
                f"{agency.kennung}: webhook secret variable {endpoint.secret_env} is not set"
            )
        try:
            secret = WebhookSecret(text)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{agency.kennung}: {endpoint.secret_env}: {exc}") from exc
        targets.append(WebhookTarget(agency.kennung, False, endpoint.url, secret))
        if endpoint.test_url is not None:
            targets.append(WebhookTarget(agency.kennung, True, endpoint.test_url, secret))
    return targets


def message_headers(message: AbstractIncomingMessage) -> HeadersType:
    """A copy of the message's headers, safe to change."""
    return dict(message.headers or {})
