"""``xbroker status UUID [--json]``: the Laufzettel of one message, oldest event first."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from broker.commands._common import settings_from
from broker.errors import StoreError
from broker.stores.backend import Backend, Stores
from broker.stores.status import Laufzettel

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
    stores = Stores(settings)
    if stores.backend is Backend.SQLITE and not settings.status_path.is_file():
        print(f"xbroker: no status store at {settings.status_path}")
        return 2
    try:
        laufzettel = asyncio.run(_timeline(stores, args.uuid))
    except StoreError as exc:
        print(f"xbroker: cannot read the status store at {stores.where()}: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(laufzettel.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_timeline(laufzettel))
    return 0 if laufzettel.events else 1


async def _timeline(stores: Stores, uuid: str) -> Laufzettel:
    """The Laufzettel as the store holds it: with PostgreSQL, whichever host wrote it."""
    try:
        return await stores.status().timeline(uuid)
    finally:
        await stores.close()
