"""What a doctor check reports: `Finding` s with a `Status`, gathered in a `Report`.

Apart from `broker.ops.doctor.checks` so that the check modules (`broker.ops.doctor.rabbitmq`,
`broker.ops.doctor.permissions`) share these types without importing the entry point.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum

__all__ = ["Finding", "Report", "Status", "skipped"]


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check saw. ``fix`` says what to do; empty when nothing is to do."""

    check: str
    status: Status
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """True unless a check failed; warnings alone keep a setup usable."""
        return all(f.status is not Status.FAIL for f in self.findings)

    def as_json(self) -> dict[str, object]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings]}


def skipped(check: str, why: str) -> Finding:
    """A check that could not run because something it needs is missing."""
    return Finding(check, Status.SKIP, f"not checked: {why}")
