"""``xbroker audit verify|seal|prune``: check, seal and prune the audit trail.

``verify`` exits 0 when the chain, every seal and the checkpoint hold, else 1 and names
the first broken line. It takes the trails of several hosts at once (each host keeps its
own file, docs/scaling.md) and reports each: 0 only when every one holds, 2 when one is
missing. ``prune`` drops entries older than ``audit_retention_days``
behind a signed checkpoint (run it from cron or a systemd timer).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

from broker.app import load_parts, party_signer
from broker.commands._common import settings_from
from broker.stores.audit import AuditTrail, verify_trail
from signing import Verifier

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("audit", help="verify, seal or prune the audit trail")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="check the chain, the seals and the checkpoint")
    verify.add_argument(
        "files", nargs="*", type=Path, metavar="FILE", help="trails (default: the settings')"
    )
    verify.add_argument("--file", type=Path, default=None, help="one trail (as FILE)")
    verify.set_defaults(func=_verify)
    seal = actions.add_parser("seal", help="seal the entries written since the last seal")
    seal.set_defaults(func=_seal)
    prune = actions.add_parser("prune", help="drop entries past retention behind a checkpoint")
    prune.add_argument("--days", type=float, default=None, help="default: audit_retention_days")
    prune.set_defaults(func=_prune)


def _verify(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    paths = [*args.files, *([args.file] if args.file is not None else [])]
    verifier = load_parts(settings).verifier()
    codes = [
        _verify_one(path, verifier, settings.broker_kennung)
        for path in paths or [settings.audit_path]
    ]
    return 2 if 2 in codes else max(codes)


def _verify_one(path: Path, verifier: Verifier, issuer: str) -> int:
    if not path.is_file():
        print(f"xbroker: no audit trail at {path}")
        return 2
    report = verify_trail(path, verifier, issuer)
    if not report.ok:
        for problem in report.problems:
            print(f"BROKEN {path}: {problem}")
        return 1
    pruned = f", pruned through entry {report.pruned_through}" if report.pruned_through else ""
    print(
        f"OK {path}: {report.entries} entries, {report.seals} seals, "
        f"{report.unsealed} after the last seal{pruned}"
    )
    return 0


def _trail(args: argparse.Namespace) -> AuditTrail:
    settings = settings_from(args)
    return AuditTrail(
        settings.audit_path,
        issuer=settings.broker_kennung,
        sign=party_signer(settings, settings.broker_kennung).sign,
    )


def _seal(args: argparse.Namespace) -> int:
    trail = _trail(args)
    trail.seal(force=True)  # this process wrote nothing; seal what the workers wrote
    trail.close()
    print(f"sealed {trail.path}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    days = settings.audit_retention_days if args.days is None else args.days
    trail = _trail(args)
    try:
        dropped = trail.prune(datetime.now(UTC) - timedelta(days=days))
    finally:
        trail.close()
    print(f"pruned {dropped} entries older than {days:g} days from {trail.path}")
    return 0
