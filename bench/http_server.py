"""The HTTP API alone, in a process of its own: ``python -m bench.http_server SETTINGS``.

What ``xbroker run`` starts for the API (`broker.http_api.start_api`, the same app,
limits, journal and ingress publisher), without the worker beside it, so the figure is
the API's and not the worker's. Prints ``ready <url>`` once it accepts connections, and
stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from broker.app import load_parts, open_records
from broker.commands._common import wait_for_signal
from broker.commands.run import freeze_startup_heap
from broker.http_api import start_api
from broker.settings import load_settings

__all__ = ["main"]


async def _serve(settings_file: Path) -> None:
    settings = load_settings(settings_file)
    parts = load_parts(settings)
    records = open_records(settings)
    freeze_startup_heap()
    api = await start_api(parts, records)
    print(f"ready {api.url}", flush=True)
    try:
        await wait_for_signal()
    finally:
        await api.stop()
        await records.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m bench.http_server SETTINGS_FILE", file=sys.stderr)
        return 2
    asyncio.run(_serve(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
