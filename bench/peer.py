"""An agency or the portal of the latency measurement, in a process of its own.

    python -m bench.peer {agency,portal} SETTINGS_FILE AMQP_URL KENNUNG PREFETCH

An agency and the portal run on hosts of their own, not inside the broker's or each
other's event loop. Run in the benchmark's process, their verifying and signing queued
behind each other and behind the publisher, and the figures measured that queue. Each
peer prints ``ready`` once it consumes, then one line per event, ``<uuid> <time>``:

* agency: the moment its handler holds the verified copy (after ``AgencyClient``
  verified it; the signed delivered receipt follows);
* portal: the moment it holds a verified ``delivered`` receipt for the message.

The time is ``time.perf_counter()``, which on Linux reads ``CLOCK_MONOTONIC``: one
clock for every process of the machine, so the benchmark compares it with its own.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from broker.app import load_parts
from broker.commands.run import freeze_startup_heap
from broker.receipts.document import Receipt
from broker.sdk.agency import IN_MEMORY, AgencyClient, Delivery
from broker.sdk.portal import Portal
from broker.settings import load_settings
from monitoring.labels import ReceiptKind
from signing import Signer
from signing.keyfiles import party_paths

__all__ = ["ROLES", "main"]

ROLES = ("agency", "portal")


def _emit(uuid: str) -> None:
    sys.stdout.write(f"{uuid} {time.perf_counter():.9f}\n")
    sys.stdout.flush()


async def _run(role: str, settings_file: Path, amqp_url: str, kennung: str, prefetch: int) -> None:
    settings = load_settings(settings_file, amqp_url=amqp_url)
    verifier = load_parts(settings).verifier()
    cert, key = party_paths(settings.pki, kennung)
    signer = Signer.from_files(key, cert)

    async def on_delivery(delivery: Delivery) -> None:
        _emit(delivery.uuid)

    async def on_receipt(receipt: Receipt) -> None:
        if receipt.kind is ReceiptKind.DELIVERED:
            _emit(receipt.nachrichten_uuid)

    peer: AgencyClient | Portal
    if role == "agency":
        peer = AgencyClient(
            amqp_url, kennung, signer, verifier, on_delivery, prefetch=prefetch, seen_path=IN_MEMORY
        )
    else:
        peer = Portal(amqp_url, kennung, signer, verifier, on_receipt=on_receipt)
    freeze_startup_heap()  # what an agency application does at start, as the broker does
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await peer.start()
    try:
        print("ready", flush=True)
        await stop.wait()
    finally:
        await peer.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 5 or args[0] not in ROLES:
        roles = ",".join(ROLES)
        print(f"usage: python -m bench.peer {{{roles}}} SETTINGS AMQP_URL KENNUNG PREFETCH")
        return 2
    role, settings_file, amqp_url, kennung, prefetch = args
    asyncio.run(_run(role, Path(settings_file), amqp_url, kennung, int(prefetch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
