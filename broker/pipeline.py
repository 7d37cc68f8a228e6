"""The pipeline: bytes in, a decision out. Pure: no I/O, no clock reads beyond timing.

Steps (DESIGN.md): parse → verify → identify → validate → authorize → route.
Deduplication, delivery and receipts are I/O and belong to the worker around it.
Everything after ``verify`` reads only what the signature covers (``Verified.signed``),
so an unsigned wrapper can never smuggle content past a check.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from lxml import etree

from broker.errors import Reason
from routing import Directory, Recipient, RouteError, RoutingInput, route
from signing import ParserLimits, SignatureError, Verifier, XmlError, parse_untrusted
from xta_schemas import Catalog, Header, MessageError, ValidationIssue

__all__ = ["Accepted", "Decision", "Pipeline", "Rejected", "StageObserver"]

StageObserver = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message that may be delivered: its signed header, standard and recipients."""

    digest: str  # SHA-256 of the exact bytes received
    header: Header
    standard: str  # "name/version"
    recipients: tuple[Recipient, ...]
    signer_fingerprint: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that can never succeed, and why."""

    digest: str
    reason: Reason
    detail: str
    issues: tuple[ValidationIssue, ...] = ()
    header: Header | None = None  # known once the signature verified
    standard: str | None = None


Decision = Accepted | Rejected


def _ignore(stage: str, seconds: float) -> None:
    return None


@dataclass(slots=True)
class Pipeline:
    """Decides about one message. Not shared between threads (the Verifier is per call)."""

    catalog: Catalog
    verifier: Verifier
    directory: Directory
    limits: ParserLimits = field(default_factory=ParserLimits)
    observe: StageObserver = _ignore

    def process(self, body: bytes) -> Decision:
        digest = hashlib.sha256(body).hexdigest()
        header: Header | None = None
        standard_key: str | None = None
        try:
            with self._stage("parse"):
                root = parse_untrusted(body, self.limits)
            with self._stage("verify"):
                verified = self.verifier.verify(root)
            signed = _root_of(verified.signed)
            with self._stage("identify"):
                standard, _ = self.catalog.identify(signed)
                standard_key = standard.key
                header = standard.header(signed)
                if not self.directory.certificate_registered(
                    header.author.kennung, verified.fingerprint
                ):
                    return Rejected(
                        digest,
                        Reason.SIGNER_NOT_AUTHOR,
                        f"the signing certificate (sha256 {verified.fingerprint[:16]}…) is not "
                        f"registered for the author {header.author.kennung}",
                        header=header,
                        standard=standard_key,
                    )
            with self._stage("validate"):
                standard.validate(signed)
                facts = standard.routing_facts(signed)
            with self._stage("route"):
                recipients = route(
                    RoutingInput(
                        author=header.author.kennung,
                        nachrichtentyp=header.nachrichtentyp,
                        version=standard.version,
                        readers=tuple(r.kennung for r in header.readers),
                        facts=facts,
                        test=header.test,
                    ),
                    self.directory,
                )
        except (XmlError, SignatureError, RouteError) as exc:
            return Rejected(
                digest, Reason(exc.code), exc.detail, header=header, standard=standard_key
            )
        except MessageError as exc:
            return Rejected(
                digest,
                Reason(exc.code),
                exc.detail,
                issues=exc.issues,
                header=header,
                standard=standard_key,
            )
        return Accepted(digest, header, standard.key, recipients, verified.fingerprint)

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(name, time.perf_counter() - start)


def _root_of(signed: etree._Element | etree._ElementTree) -> etree._Element:
    return signed.getroot() if isinstance(signed, etree._ElementTree) else signed
