"""``xbroker subscribe --agency ID``: receive an agency's mail into a folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from broker.app import load_parts, party_keys, party_signer
from broker.commands._common import run_async, settings_from, wait_for_signal
from broker.logs import configure_logging, event
from broker.sdk.agency import AgencyClient, Delivery, Handler, default_seen_path

__all__ = ["register", "write_to_folder"]

log = logging.getLogger("xbroker.agency")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("subscribe", help="receive an agency's messages into a folder")
    parser.add_argument("--agency", required=True, help="the agency's Behördenkennung")
    parser.add_argument("--out", type=Path, help="folder for received messages")
    parser.add_argument("--test", action="store_true", help="read the test inbox")
    parser.set_defaults(func=_subscribe)


def write_to_folder(folder: Path) -> Handler:
    folder.mkdir(parents=True, exist_ok=True)

    async def handle(delivery: Delivery) -> None:
        target = folder / f"{delivery.uuid}.xml"
        tmp = target.with_suffix(".part")
        tmp.write_bytes(delivery.body)
        tmp.replace(target)  # whole files only: a reader never sees half a message
        event(log, "agency.received", uuid=delivery.uuid, nachrichtentyp=delivery.nachrichtentyp)

    return handle


def _subscribe(args: argparse.Namespace) -> int:
    configure_logging()
    settings = settings_from(args)

    async def main() -> int:
        parts = load_parts(settings)
        folder = args.out or settings.inbox / args.agency.replace(":", "_")
        client = AgencyClient(
            settings.rabbitmq_urls,
            args.agency,
            party_signer(settings, args.agency),
            parts.verifier(),
            write_to_folder(folder),
            test=args.test,
            confirm_timeout=settings.confirm_timeout_seconds,
            seen_path=default_seen_path(args.agency, settings.state_dir),
            keys=party_keys(settings, args.agency),
        )
        await client.start()
        print(f"receiving mail of {args.agency} into {folder} (Ctrl-C to stop)", flush=True)
        try:
            await wait_for_signal()
        finally:
            await client.close()
        return 0

    return run_async(main)
