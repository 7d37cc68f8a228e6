"""Every metric xbroker exports, defined on a registry the caller owns.

The registry is injected, never prometheus_client's global one: each worker process, each
test and each embedded broker gets its own, so two instances never share or clash over
series. Names are in base units with the ``xbroker_`` prefix; label values are bounded
(see `monitoring.labels`): a label is never a message id.

The attributes are the prometheus_client objects themselves, so a call site may use them
directly; the helper methods exist where they make a call site shorter and check that a
label value is one of the bounded set.

Certificate expiry is labelled ``kennung`` and ``serial``. The serial number is an
identifier, but one series per *registered* certificate is bounded by the agency
directory, not by traffic, and it is the number an operator needs to find the certificate
to renew when an agency holds more than one (during a key rollover). Its value is the
certificate's notAfter as Unix time, the convention of the blackbox exporter: a timestamp
never goes stale, so an alert computes the time left with ``- time()``.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from monitoring.faults import FaultMetrics
from monitoring.labels import DeliveryOutcome, ReceiptKind, Sealing, Stage, WebhookOutcome

__all__ = [
    "END_TO_END_BUCKETS",
    "STAGE_BUCKETS",
    "CertificateExpiry",
    "Metrics",
]

# 50 µs (a cached lookup) to 5 s (a large schema validation or a slow confirm).
STAGE_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)

# 1 ms to 60 s from the author's publish to the agency's acknowledgement. 1.0 is a bucket
# boundary on purpose: the latency SLO (99 % under one second) reads le="1.0".
END_TO_END_BUCKETS: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)


@dataclass(frozen=True, slots=True)
class CertificateExpiry:
    """One registered certificate: whose it is, its serial number, when it expires.

    ``not_after`` must carry a time zone (cryptography's ``not_valid_after_utc`` does);
    a naive datetime would be read in the machine's local time.
    """

    kennung: str
    serial: str
    not_after: datetime


def _version() -> str:
    try:
        return metadata.version("xbroker")
    except metadata.PackageNotFoundError:
        return "unknown"


class Metrics:
    """The metrics of one xbroker process, registered on ``registry``.

    ``reasons`` are the reject reason codes to start at zero, so that a rate over
    ``xbroker_messages_rejected_total`` exists before the first rejection of that kind;
    monitoring does not import the broker's `Reason` enum to stay below it.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        reasons: Iterable[str] = (),
        version: str | None = None,
    ) -> None:
        self.registry = registry
        self.received = Counter(
            "xbroker_messages_received_total",
            "Messages taken from the ingress queue, before anything is known about them.",
            registry=registry,
        )
        self.accepted = Counter(
            "xbroker_messages_accepted_total",
            "Messages that passed every check and were routed.",
            ["standard", "message_type"],
            registry=registry,
        )
        self.rejected = Counter(
            "xbroker_messages_rejected_total",
            "Messages rejected with a rejection receipt, by reason code.",
            ["reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "xbroker_messages_duplicate_total",
            "Messages whose nachrichtenUUID was seen before; answered, not delivered again.",
            ["message_type"],
            registry=registry,
        )
        self.deliveries = Counter(
            "xbroker_deliveries_total",
            "Recipient copies by outcome (delivered, failed, dead_lettered, returned).",
            ["agency", "outcome"],
            registry=registry,
        )
        self.copies = Counter(
            "xbroker_copies_total",
            "Copies queued for an agency, sealed for its key or in clear.",
            ["agency", "sealing"],
            registry=registry,
        )
        self.receipts = Counter(
            "xbroker_receipts_total",
            "Signed receipts sent to authors, by kind.",
            ["kind"],
            registry=registry,
        )
        self.webhook_attempts = Counter(
            "xbroker_webhook_attempts_total",
            "Attempts to push a message to an agency's webhook, by outcome.",
            ["agency", "outcome"],
            registry=registry,
        )
        self.webhook_disabled = Gauge(
            "xbroker_webhook_endpoint_disabled",
            "1 while an agency's webhook endpoint is disabled (it answered 410 Gone).",
            ["agency"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "xbroker_messages_in_flight",
            "Messages taken from the ingress queue and not yet acked or rejected.",
            registry=registry,
        )
        self.stage_duration = Histogram(
            "xbroker_stage_duration_seconds",
            "Time spent in one step of the path of a message.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.end_to_end = Histogram(
            "xbroker_end_to_end_latency_seconds",
            "Time from the author's publish to the agency's acknowledgement.",
            ["message_type"],
            buckets=END_TO_END_BUCKETS,
            registry=registry,
        )
        self.queue_messages = Gauge(
            "xbroker_agency_queue_messages",
            "Messages waiting in an agency's inbox queue.",
            ["agency"],
            registry=registry,
        )
        self.queue_consumers = Gauge(
            "xbroker_agency_queue_consumers",
            "Consumers attached to an agency's inbox queue, where the broker can count them.",
            ["agency"],
            registry=registry,
        )
        self.dead_letters = Gauge(
            "xbroker_agency_dead_letter_messages",
            "Messages in an agency's dead-letter queue.",
            ["agency"],
            registry=registry,
        )
        self.waiting_copies = Gauge(
            "xbroker_agency_copies_waiting",
            "Copies an agency has not fetched for longer than the warning period "
            "(warn_after_days).",
            ["agency"],
            registry=registry,
        )
        self.certificate_expiry = Gauge(
            "xbroker_certificate_expiry_seconds",
            "notAfter of a registered certificate, as Unix time in seconds.",
            ["kennung", "serial"],
            registry=registry,
        )
        self.build_info = Info(
            "xbroker_build",
            "Version of xbroker and of the Python running it.",
            registry=registry,
        )
        self.ready = Gauge(
            "xbroker_ready",
            "1 when every readiness check passes, else 0.",
            registry=registry,
        )
        self.faults = FaultMetrics(registry)
        self.build_info.info(
            {"version": version or _version(), "python": platform.python_version()}
        )
        self._start_at_zero(reasons)

    def _start_at_zero(self, reasons: Iterable[str]) -> None:
        # A counter that appears only at its first increment hides that increment from
        # rate(); the label values known in advance are created at zero instead.
        for stage in Stage:
            self.stage_duration.labels(stage=stage.value)
        for kind in ReceiptKind:
            self.receipts.labels(kind=kind.value)
        for reason in reasons:
            self.rejected.labels(reason=reason)

    # ingress

    @contextmanager
    def track_message(self) -> Iterator[None]:
        """Count a message taken from the ingress queue and hold it in flight until done."""
        self.received.inc()
        self.in_flight.inc()
        try:
            yield
        finally:
            self.in_flight.dec()

    @contextmanager
    def time_stage(self, stage: Stage | str) -> Iterator[None]:
        """Observe how long the block takes as ``stage``, whether it returns or raises."""
        child = self.stage_duration.labels(stage=Stage(stage).value)
        start = time.perf_counter()
        try:
            yield
        finally:
            child.observe(time.perf_counter() - start)

    def accept(self, standard: str, message_type: str) -> None:
        """Count a message that passed every check."""
        self.accepted.labels(standard=standard, message_type=message_type).inc()

    def reject(self, reason: str) -> None:
        """Count a rejection by its reason code (a `broker.errors.Reason` value)."""
        self.rejected.labels(reason=str(reason)).inc()

    def duplicate(self, message_type: str) -> None:
        """Count a message whose nachrichtenUUID was already handled."""
        self.duplicates.labels(message_type=message_type).inc()

    # delivery and receipts

    def delivery(self, agency: str, outcome: DeliveryOutcome | str) -> None:
        """Count what became of one recipient's copy."""
        self.deliveries.labels(agency=agency, outcome=DeliveryOutcome(outcome).value).inc()

    def copy(self, agency: str, sealing: Sealing) -> None:
        """Count a copy queued for ``agency``, sealed or in clear."""
        self.copies.labels(agency=agency, sealing=Sealing(sealing).value).inc()

    def receipt(self, kind: ReceiptKind | str) -> None:
        """Count a signed receipt sent to an author."""
        self.receipts.labels(kind=ReceiptKind(kind).value).inc()

    def webhook_attempt(self, agency: str, outcome: WebhookOutcome | str) -> None:
        """Count one push attempt to an agency's webhook."""
        self.webhook_attempts.labels(agency=agency, outcome=WebhookOutcome(outcome).value).inc()

    def set_webhook_disabled(self, agency: str, disabled: bool) -> None:
        """Publish whether an agency's webhook endpoint is disabled (410 Gone)."""
        self.webhook_disabled.labels(agency=agency).set(1 if disabled else 0)

    def observe_end_to_end(self, message_type: str, seconds: float) -> None:
        """Record the latency from the author's publish to the agency's acknowledgement."""
        self.end_to_end.labels(message_type=message_type).observe(max(seconds, 0.0))

    # state sampled from RabbitMQ and the directory

    def set_queue(
        self, agency: str, *, messages: int, consumers: int | None, dead_letters: int
    ) -> None:
        """Record the depth, consumers and dead letters of one agency's queues.

        ``consumers=None`` leaves the consumer gauge alone: RabbitMQ 3.10 answers a passive
        declare of a quorum queue with a consumer count of 0 whatever the truth, so a
        caller without a reliable count must not publish one. The consumer alert reads
        RabbitMQ's own ``rabbitmq_detailed_queue_consumers`` for that reason, whatever
        the broker publishes here.
        """
        self.queue_messages.labels(agency=agency).set(messages)
        if consumers is not None:
            self.queue_consumers.labels(agency=agency).set(consumers)
        self.dead_letters.labels(agency=agency).set(dead_letters)

    def set_waiting(self, counts: Mapping[str, int]) -> None:
        """Replace the waiting-copies series: agencies absent from ``counts`` have none."""
        self.waiting_copies.clear()
        for agency, count in counts.items():
            self.waiting_copies.labels(agency=agency).set(count)

    def set_certificates(self, certificates: Iterable[CertificateExpiry]) -> None:
        """Replace the certificate series by those of the directory as it is now.

        Clearing first drops the series of a certificate removed from the directory, so
        a retired certificate cannot keep an expiry alert firing.
        """
        expiries = list(certificates)
        for certificate in expiries:
            if certificate.not_after.tzinfo is None:
                raise ValueError(f"notAfter of {certificate.serial} has no time zone")
        self.certificate_expiry.clear()
        for certificate in expiries:
            self.certificate_expiry.labels(
                kennung=certificate.kennung, serial=certificate.serial
            ).set(certificate.not_after.timestamp())

    def set_ready(self, ready: bool) -> None:
        """Publish the outcome of the readiness checks as ``xbroker_ready``."""
        self.ready.set(1 if ready else 0)

    def follow_readiness(self, readiness: Callable[[], Mapping[str, bool]]) -> None:
        """Compute ``xbroker_ready`` from ``readiness`` at every scrape.

        The same callable serves ``/readyz``; evaluating it at scrape time means the gauge
        can never lag behind the endpoint. A check that raises counts as not ready.
        """

        def ready() -> float:
            try:
                return 1.0 if all(readiness().values()) else 0.0
            except Exception:
                return 0.0

        self.ready.set_function(ready)
