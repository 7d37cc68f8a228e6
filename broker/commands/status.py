"""``xbroker status UUID [--json]``: the Laufzettel of one message, oldest event first."""

from __future__ import annotations

import argparse
import json

from broker.commands._common import settings_from
from broker.stores.status import Laufzettel, StatusStore

__all__ = ["format_timeline", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("status", help="print the Laufzettel (timeline) of a message")
    parser.add_argument("uuid", help="the nachrichtenUUID")
    parser.add_argument("--json", action="store_true", help="print it as JSON")
    parser.set_defaults(func=_status)


def format_timeline(laufzettel: Laufzettel) -> str:
    """One line per event: time, kind, then the facts it carries."""
    lines = [f"{laufzettel.uuid}: {laufzettel.state}"]
    for e in laufzettel.events:
        facts = [
            f"{name}={value}"
            for name, value in (
                ("author", e.author),
                ("agency", e.agency),
                ("type", e.nachrichtentyp),
                ("standard", e.standard),
                ("reason", e.reason),
                ("recipients", ",".join(e.recipients) or None),
                ("sha256", e.digest),
            )
            if value
        ]
        lines.append(
            f"  {e.at.isoformat(timespec='milliseconds')}  {e.kind.value:<10} {' '.join(facts)}"
        )
    return "\n".join(lines)


def _status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if not settings.status_path.is_file():
        print(f"xbroker: no status store at {settings.status_path}")
        return 2
    store = StatusStore(settings.status_path)
    try:
        laufzettel = store.timeline(args.uuid)
    finally:
        store.close()
    if args.json:
        print(json.dumps(laufzettel.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_timeline(laufzettel))
    return 0 if laufzettel.events else 1
