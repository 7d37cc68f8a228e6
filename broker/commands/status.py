"""``xbroker status UUID [--json]``: the Laufzettel of one message, oldest event first.

``xbroker status --from FILE [--json]`` prints the Laufzettel of every UUID in FILE (one
a line, ``-`` for standard input), in that order, from one connection to the store: what
an operator asks of many messages at once (an incident's list, a portal's complaint)
without starting a process per message. With ``--json`` each is one line (JSON Lines).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from broker.commands._common import settings_from
from broker.errors import StoreError
from broker.stores.backend import Backend, Stores
from broker.stores.status import Laufzettel

__all__ = ["format_timeline", "register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("status", help="print the Laufzettel (timeline) of a message")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("uuid", nargs="?", help="the nachrichtenUUID")
    which.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="read nachrichtenUUIDs from FILE, one a line (- for standard input)",
    )
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
        uuids = [args.uuid] if args.uuid is not None else _read_uuids(args.from_file)
    except OSError as exc:
        print(f"xbroker: cannot read {args.from_file}: {exc}", file=sys.stderr)
        return 2
    try:
        timelines = asyncio.run(_timelines(stores, uuids))
    except StoreError as exc:
        print(f"xbroker: cannot read the status store at {stores.where()}: {exc}", file=sys.stderr)
        return 2
    for laufzettel in timelines:
        if not args.json:
            print(format_timeline(laufzettel))
        elif args.uuid is not None:
            print(json.dumps(laufzettel.as_dict(), indent=2, ensure_ascii=False))
        else:
            print(json.dumps(laufzettel.as_dict(), ensure_ascii=False))
    return 0 if all(laufzettel.events for laufzettel in timelines) else 1


def _read_uuids(name: str) -> list[str]:
    text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


async def _timelines(stores: Stores, uuids: list[str]) -> list[Laufzettel]:
    """The Laufzettel as the store holds them: with PostgreSQL, whichever host wrote them."""
    try:
        status = stores.status()
        return [await status.timeline(uuid) for uuid in uuids]
    finally:
        await stores.close()
