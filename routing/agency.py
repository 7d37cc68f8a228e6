"""An agency as the directory knows it: who it is, how to reach it, what it sends and receives.

Modelled on DVDV: each participant has a Behördenkennung (``prefix:kennung``), a name,
the certificates it signs with, the certificates of its encryption keys, the message
types it receives (as named reader or as the agency responsible for a region), the types
it receives copies of, and the types it may author. ``routing.directory_file`` builds
these from the directory file.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ANY_REGION",
    "Agency",
    "AmqpEndpoint",
    "Endpoint",
    "FrozenModel",
    "RegisteredCertificate",
    "Subscription",
    "WebhookEndpoint",
    "XtaEndpoint",
]

# A region entry that covers every region, and messages that name none.
ANY_REGION = "*"


class FrozenModel(BaseModel):
    """A part of the directory file: unknown fields are refused, nothing changes after load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Subscription(FrozenModel):
    """A message type an agency accepts, optionally limited to some standard versions."""

    type: str
    versions: tuple[str, ...] = ()

    def matches(self, nachrichtentyp: str, version: str) -> bool:
        if not fnmatch.fnmatchcase(nachrichtentyp, self.type):
            return False
        return not self.versions or version in self.versions


class AmqpEndpoint(FrozenModel):
    kind: Literal["amqp"] = "amqp"
    test: bool = Field(default=True, description="has a test inbox for messages with the test flag")


class WebhookEndpoint(FrozenModel):
    kind: Literal["webhook"]
    url: str
    secret_env: str = Field(description="environment variable holding the webhook secret")
    test_url: str | None = None

    @field_validator("url", "test_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("https://", "http://127.", "http://localhost")
        ):
            raise ValueError("webhook URLs must be https:// (plain http only on loopback)")
        return value

    @property
    def test(self) -> bool:
        return self.test_url is not None


class XtaEndpoint(FrozenModel):
    """The agency's software fetches its messages over XTA 2 (``broker.xta``): its copies
    wait in a RabbitMQ stream, its message box, until it closes them."""

    kind: Literal["xta"]
    test: bool = Field(default=False, description="XTA boxes have no separate test box")


Endpoint = AmqpEndpoint | WebhookEndpoint | XtaEndpoint


@dataclass(frozen=True, slots=True)
class RegisteredCertificate:
    """A signing certificate registered for an agency (by file or by fingerprint)."""

    fingerprint: str
    certificate: x509.Certificate | None
    source: str

    @property
    def not_after(self) -> datetime | None:
        return self.certificate.not_valid_after_utc if self.certificate else None


@dataclass(frozen=True, slots=True)
class Agency:
    kennung: str
    name: str
    certificates: tuple[RegisteredCertificate, ...]
    accepts: tuple[Subscription, ...]
    regions: tuple[str, ...]
    notify: tuple[Subscription, ...]
    may_send: tuple[str, ...]
    endpoint: Endpoint
    aliases: tuple[str, ...] = ()
    encryption: tuple[RegisteredCertificate, ...] = ()
    sealed: bool = False  # copies for it are sealed for one of its encryption keys

    def accepts_type(self, nachrichtentyp: str, version: str) -> bool:
        return any(s.matches(nachrichtentyp, version) for s in self.accepts)

    def notified_of(self, nachrichtentyp: str, version: str) -> bool:
        return any(s.matches(nachrichtentyp, version) for s in self.notify)

    def may_author(self, nachrichtentyp: str) -> bool:
        return any(fnmatch.fnmatchcase(nachrichtentyp, p) for p in self.may_send)

    def responsible_for(self, region: str | None) -> bool:
        """Whether the agency is responsible for ``region`` (None: a message naming none)."""
        if ANY_REGION in self.regions:
            return True
        # A region entry covers every key it prefixes: "01060" covers "01060063".
        return region is not None and any(region.startswith(r) for r in self.regions)

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(c.fingerprint for c in self.certificates)
