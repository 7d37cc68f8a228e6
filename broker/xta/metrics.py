"""Metrics of the XTA endpoint, on the registry it is given.

``xbroker_xta_requests_total{operation, outcome}``  every request, by operation and
    outcome (``ok`` or the fault's code); both label sets are enums, so bounded.
``xbroker_xta_request_seconds{operation}``  how long answering took.
``xbroker_xta_box_waiting_messages{agency}``  copies in an XTA agency's message box that
    it has not closed (agencies of the directory only).
``xbroker_xta_index_failures_total{agency}``  copies of a box that could not be indexed
    (the box's index stops there and tries again; anything above zero wants a look).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from broker.errors import Fault

__all__ = ["Operation", "XtaMetrics", "outcome_of"]


class Operation(StrEnum):
    CREATE_MESSAGE_ID = "create_message_id"
    SEND_MESSAGE = "send_message"
    STATUS_LIST = "status_list"
    FETCH = "fetch"
    CLOSE = "close"
    TRANSPORT_REPORT = "transport_report"
    CHECK_ACCOUNT = "check_account"
    LOOKUP_SERVICE = "lookup_service"
    UNKNOWN = "unknown"


def outcome_of(fault: Fault | None) -> str:
    return "ok" if fault is None else fault.name.lower()


class XtaMetrics:
    def __init__(self, registry: CollectorRegistry, agencies: Iterable[str] = ()) -> None:
        self._registry = registry
        self._requests = Counter(
            "xbroker_xta_requests",
            "XTA requests answered, by operation and outcome (ok or the fault)",
            ["operation", "outcome"],
            registry=registry,
        )
        self._seconds = Histogram(
            "xbroker_xta_request_seconds",
            "Time to answer an XTA request",
            ["operation"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self._waiting = Gauge(
            "xbroker_xta_box_waiting_messages",
            "Copies in an XTA agency's message box not yet closed by it",
            ["agency"],
            registry=registry,
        )
        self._index_failures = Counter(
            "xbroker_xta_index_failures",
            "Copies of an XTA message box that could not be indexed (tried again)",
            ["agency"],
            registry=registry,
        )
        for operation in Operation:
            for outcome in ("ok", *(f.name.lower() for f in Fault)):
                self._requests.labels(operation.value, outcome)
        for agency in agencies:
            self._waiting.labels(agency).set(0)
            self._index_failures.labels(agency)

    def unregister(self) -> None:
        """Take these metrics off the registry (an endpoint that failed to start)."""
        for collector in (self._requests, self._seconds, self._waiting, self._index_failures):
            self._registry.unregister(collector)

    def request(self, operation: Operation, fault: Fault | None, seconds: float) -> None:
        self._requests.labels(operation.value, outcome_of(fault)).inc()
        self._seconds.labels(operation.value).observe(seconds)

    def waiting(self, agency: str, count: int) -> None:
        self._waiting.labels(agency).set(count)

    def index_failure(self, agency: str) -> None:
        self._index_failures.labels(agency).inc()
