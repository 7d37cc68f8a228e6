"""The pipeline: bytes and a time in, a decision out.

Steps: parse → verify (signature and trust) → identify (standard, header, and that the
signing certificate is registered for the author) → validate (schema) → route (the
author may send it; who receives it). Deduplication, delivery and receipts are I/O and
belong to the worker around it (`broker.worker.ingress`).

It is a pure function of its inputs: the message's bytes, the time ``at`` it is decided
at, and what the pipeline holds, all loaded before the first message: the catalog, the
verifier with its trust store and the CRL snapshot that store holds, and the directory.
No I/O, no clock reads (the observer's stage timing uses ``perf_counter`` and decides
nothing), no environment reads. The worker replaces the directory and the CRL snapshot
whole; reading the files behind them is the worker's job (`broker.worker.reload`). The
pipeline runs in a thread of the worker's (`broker.worker.offloop`), so it reads each of
them once per message: a swap while a message is decided cannot mix two versions. One
exception to "no I/O": a standard whose detailed report was not prepared
(``Standard.prepare_report``, which ``xbroker run`` does for all at start) builds it
from its XSD files at its first invalid message.

Everything after ``verify`` reads only what the signature covers (``Verified.signed``),
so an unsigned wrapper can never smuggle content past a check. What the signature does
not cover (comments, processing instructions outside the root) is never delivered: for
a message that carries any, ``Accepted.covered`` holds the bytes to deliver instead,
the message without them (`signing.uncovered`). Every rejection of the
lower packages is a `broker.errors.Rejection` carrying its `Reason`; the pipeline
catches that one class.

``budget`` is the CPU time one message may use (its thread's, ``time.thread_time``, the
one clock the pipeline reads): past it, the message is rejected with
``processing-limit`` at the end of the step that passed it. The parser's and verifier's
limits bound every step, so the budget is a second line.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

from lxml import etree

from broker.errors import Reason, Rejection
from monitoring.labels import Stage
from routing import Directory, Recipient, RoutingInput, route
from signing import ParserLimits, Verifier, parse_untrusted
from signing.uncovered import NOTHING_UNCOVERED, Uncovered, covered_only
from xta_schemas import Catalog, Header, MessageError, ValidationIssue

__all__ = ["Accepted", "Decision", "Pipeline", "Rejected", "StageObserver"]

StageObserver = Callable[[Stage, float], None]
"""Told how many seconds each stage of one message took."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message that may be delivered: its signed header, standard and recipients."""

    digest: str  # SHA-256 of the exact bytes received
    header: Header
    standard: str  # "name/version"
    recipients: tuple[Recipient, ...]
    signer_fingerprint: str
    # The message to deliver where the received one carries what its signature does not
    # cover; None: the received bytes, unchanged.
    covered: bytes | None = None
    uncovered: Uncovered = NOTHING_UNCOVERED


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


def _ignore(stage: Stage, seconds: float) -> None:
    return None


@dataclass(slots=True)
class Pipeline:
    """Decides about one message. Not shared between threads (the Verifier is per call)."""

    catalog: Catalog
    verifier: Verifier
    directory: Directory
    limits: ParserLimits = field(default_factory=ParserLimits)
    observe: StageObserver = _ignore
    budget: float | None = None  # CPU seconds per message

    def process(self, body: bytes, *, at: datetime, message_id: str | None = None) -> Decision:
        """Decide about ``body`` as of ``at`` (the time certificates and CRLs are judged at).

        ``message_id`` is the id it travelled under (AMQP message_id, HTTP
        Idempotency-Key), from which a standard without identities of its own gets one.
        """
        digest = hashlib.sha256(body).hexdigest()
        directory = self.directory
        started = time.thread_time()
        header: Header | None = None
        standard_key: str | None = None
        try:
            with self._stage(Stage.PARSE, started):
                root = parse_untrusted(body, self.limits)
            with self._stage(Stage.VERIFY, started):
                verified = self.verifier.verify(root, at=at, parse_signed=False)
                covered = covered_only(root) if verified.uncovered else None
                # The received tree goes before the signed one is parsed: a large
                # message never has both at once (`signing.enveloped.SignedContent`).
                del root
                signed = _root_of(verified.signed)
            with self._stage(Stage.IDENTIFY, started):
                standard, _ = self.catalog.identify(signed)
                standard_key = standard.key
                header = standard.header(
                    signed,
                    transport_id=message_id,
                    signer=verified.subject_kennung,
                    aliases=directory.kennung_named,
                )
                if not directory.certificate_registered(
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
            with self._stage(Stage.VALIDATE, started):
                standard.validate(signed)
                facts = standard.routing_facts(signed)
            with self._stage(Stage.ROUTE, started):
                recipients = route(
                    RoutingInput(
                        author=header.author.kennung,
                        nachrichtentyp=header.nachrichtentyp,
                        version=standard.version,
                        readers=tuple(r.kennung for r in header.readers),
                        facts=facts,
                        test=header.test,
                    ),
                    directory,
                )
        except Rejection as exc:
            return Rejected(
                digest,
                exc.reason,
                exc.detail,
                issues=exc.issues if isinstance(exc, MessageError) else (),
                header=header,
                standard=standard_key,
            )
        return Accepted(
            digest,
            header,
            standard.key,
            recipients,
            verified.fingerprint,
            covered=covered,
            uncovered=verified.uncovered,
        )

    @contextmanager
    def _stage(self, stage: Stage, started: float) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.observe(stage, time.perf_counter() - start)
        spent = time.thread_time() - started
        if self.budget is not None and spent > self.budget:
            raise Rejection(
                Reason.PROCESSING_LIMIT,
                f"{spent:.1f} s of CPU by the end of {stage.value}, more than the "
                f"{self.budget:g} s a message may use",
            )


def _root_of(signed: etree._Element | etree._ElementTree) -> etree._Element:
    return signed.getroot() if isinstance(signed, etree._ElementTree) else signed
