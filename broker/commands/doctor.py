"""``xbroker doctor``: check this installation, say what is wrong and how to fix it.

Exit code 0 when nothing failed (warnings allowed), 1 when a check failed. A settings
file that cannot be read is a failed check too, not a crash: doctor is what an operator
runs when things are broken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import TextIO

from broker.commands._common import settings_from
from broker.errors import ConfigurationError
from broker.ops.doctor.checks import Finding, Report, Status, diagnose
from broker.ops.doctor.permissions import check_permissions

__all__ = ["register", "render"]

_MARKS = {Status.OK: "ok  ", Status.WARN: "WARN", Status.FAIL: "FAIL", Status.SKIP: "skip"}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "doctor", help="check RabbitMQ, topology, standards, certificates; say how to fix"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for RabbitMQ (default 5)"
    )
    parser.set_defaults(func=_doctor)


def render(report: Report, out: TextIO) -> None:
    """The report for a person: one line per finding, the fix indented below it."""
    for finding in report.findings:
        print(f"{_MARKS[finding.status]}  {finding.check:<12} {finding.detail}", file=out)
        if finding.fix and finding.status in (Status.WARN, Status.FAIL):
            print(f"      {'':<12} fix: {finding.fix}", file=out)
    failed = sum(f.status is Status.FAIL for f in report.findings)
    warned = sum(f.status is Status.WARN for f in report.findings)
    verdict = "no problems found" if report.ok else _count(failed, "problem")
    print(f"\n{verdict}, {_count(warned, 'warning')}", file=out)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _doctor(args: argparse.Namespace) -> int:
    # aiormq logs a refused connection itself; the finding already says it, with the fix.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    try:
        settings = settings_from(args)
    except ConfigurationError as exc:
        report = Report(
            (
                Finding(
                    "settings",
                    Status.FAIL,
                    str(exc),
                    "correct the settings file (--config, $XBROKER_CONFIG) or the "
                    "XBROKER_* environment variables",
                ),
            )
        )
    else:
        report = asyncio.run(
            diagnose(settings, timeout=args.timeout, permissions=check_permissions)
        )
    if args.json:
        json.dump(report.as_json(), sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        render(report, sys.stdout)
    return 0 if report.ok else 1
