"""One agency of the fault suite, in a process of its own.

    python tests/faults/agency_runner.py CONFIG KENNUNG HANDLED_FILE URL [URL ...]

It receives with the agency SDK and writes the nachrichtenUUID of every copy its handler
is given to HANDLED_FILE, one per line, so that the suite can count copies handled twice;
on SIGTERM it stops and writes how often a delivery receipt had to be retried to
``HANDLED_FILE.stats.json``. A process of its own because verifying every copy and
signing every receipt for three agencies in the suite's own process made that process
the slowest part of every scenario.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path


async def main(config: Path, kennung: str, handled: Path, urls: list[str]) -> None:
    from broker.app import load_parts, party_keys, party_signer
    from broker.sdk.agency import AgencyClient, Delivery, default_seen_path
    from broker.settings import load_settings

    settings = load_settings(config, amqp_urls=tuple(urls))
    parts = load_parts(settings)
    out = handled.open("a", encoding="utf-8", buffering=1)

    async def handle(delivery: Delivery) -> None:
        out.write(delivery.uuid + "\n")

    client = AgencyClient(
        urls,
        kennung,
        party_signer(settings, kennung),
        parts.verifier(),
        handle,
        seen_path=default_seen_path(kennung, handled.parent),
        keys=party_keys(settings, kennung),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await client.start()
    _write(Path(f"{handled}.ready"), "")
    await stop.wait()
    await client.close()
    out.close()
    stats = {"receipt_retries": client.receipt_retries, "rejected": client.rejected}
    _write(Path(f"{handled}.stats.json"), json.dumps(stats))


def _write(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4:]))
