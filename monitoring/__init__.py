"""Metrics, health endpoint, Prometheus rules and Grafana dashboard of xbroker.

Knows nothing of the business logic: the broker reports what happened through `Metrics`
and tells the HTTP endpoint how to check readiness.
"""

from monitoring.labels import (
    DeliveryOutcome,
    ReceiptKind,
    Sealing,
    Stage,
    WebhookOutcome,
    WorkerFault,
)
from monitoring.metrics import CertificateExpiry, Metrics

__all__ = [
    "CertificateExpiry",
    "DeliveryOutcome",
    "Metrics",
    "ReceiptKind",
    "Sealing",
    "Stage",
    "WebhookOutcome",
    "WorkerFault",
]
