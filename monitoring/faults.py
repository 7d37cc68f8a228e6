"""The metrics of a worker's faults: what holds it, how full its disk is, what it parked.

Part of `monitoring.metrics.Metrics` (its ``faults`` attribute), on the same registry.
Every series a fault can produce starts at zero, so that an alert on a rate or on a
gauge exists before the first fault.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

from monitoring.labels import WorkerFault

__all__ = ["DiskSpace", "FaultMetrics"]


@dataclass(frozen=True, slots=True)
class DiskSpace:
    """Free and total space of one file system, in bytes and in inodes."""

    free_bytes: int
    size_bytes: int
    free_inodes: int
    inodes: int

    @property
    def free_ratio(self) -> float:
        """The smaller of the free shares of bytes and of inodes (1.0 when unknown)."""
        shares = [
            free / total
            for free, total in ((self.free_bytes, self.size_bytes), (self.free_inodes, self.inodes))
            if total > 0
        ]
        return min(shares, default=1.0)


class FaultMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.active = Gauge(
            "xbroker_fault_active",
            "1 while a fault of the worker's surroundings holds its messages, by fault.",
            ["fault"],
            registry=registry,
        )
        self.begun = Counter(
            "xbroker_faults_total",
            "Faults of the worker's surroundings that began, by fault.",
            ["fault"],
            registry=registry,
        )
        self.held = Gauge(
            "xbroker_messages_held",
            "Messages a worker holds unacked until a fault clears.",
            registry=registry,
        )
        self.message_retries = Counter(
            "xbroker_message_retries_total",
            "Messages that failed by themselves on a healthy worker and were returned "
            "to their queue after a delay (the delivery limit dead-letters them).",
            registry=registry,
        )
        self.topology_repairs = Counter(
            "xbroker_topology_repairs_total",
            "Queues found missing when publishing and declared again.",
            registry=registry,
        )
        self.undeliverable = Counter(
            "xbroker_receipts_undeliverable_total",
            "Receipts nobody could receive (no receipt queue for the author or sender); "
            "their messages are parked in a dead-letter queue for an operator.",
            registry=registry,
        )
        self.disk_free_bytes = Gauge(
            "xbroker_state_disk_free_bytes",
            "Free bytes on the fullest file system holding the worker's state.",
            registry=registry,
        )
        self.disk_size_bytes = Gauge(
            "xbroker_state_disk_size_bytes",
            "Size in bytes of the fullest file system holding the worker's state.",
            registry=registry,
        )
        self.disk_free_inodes = Gauge(
            "xbroker_state_disk_free_inodes",
            "Free inodes on the fullest file system holding the worker's state.",
            registry=registry,
        )
        self.disk_inodes = Gauge(
            "xbroker_state_disk_inodes",
            "Inodes of the fullest file system holding the worker's state.",
            registry=registry,
        )
        for fault in WorkerFault:
            self.active.labels(fault=fault.value).set(0)
            self.begun.labels(fault=fault.value)

    def began(self, fault: WorkerFault) -> None:
        """``fault`` holds the worker from now on."""
        self.begun.labels(fault=WorkerFault(fault).value).inc()
        self.active.labels(fault=fault.value).set(1)

    def ended(self, fault: WorkerFault) -> None:
        """``fault`` has cleared."""
        self.active.labels(fault=WorkerFault(fault).value).set(0)

    def set_disk(self, space: DiskSpace) -> None:
        self.disk_free_bytes.set(space.free_bytes)
        self.disk_size_bytes.set(space.size_bytes)
        self.disk_free_inodes.set(space.free_inodes)
        self.disk_inodes.set(space.inodes)
