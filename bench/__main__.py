"""``python -m bench``: measure xbroker against the bare RabbitMQ relay, print a table.

    python -m bench --quick --json out.json

RabbitMQ: ``XBROKER_AMQP_URL`` if set, else this checkout's local node (started if need
be); on the local node every run uses a private vhost, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.launch import LOOPS
from bench.report import render
from bench.run import FULL_BACKLOG, Options, measure
from broker.settings import Settlement

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Throughput against the bare RabbitMQ relay, latency, memory, micro figures.",
    )
    parser.add_argument("--quick", action="store_true", help="small counts, under a minute")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument("--amqp-url", help="run against this URL's vhost as given")
    parser.add_argument("--workers", type=int, help="worker processes for 'one per core'")
    parser.add_argument("--count", type=int, help="backlog of each throughput drain")
    parser.add_argument(
        "--backlog", type=int, help=f"backlog of the memory drain (full run: {FULL_BACKLOG:,})"
    )
    parser.add_argument("--latency-seconds", type=float, help="publishing time per load")
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="asyncio",
        help="event loop of the worker processes and relays (uvloop: measure it before "
        "adopting it)",
    )
    parser.add_argument(
        "--prefetch", type=int, default=64, help="prefetch of the workers and relays (64)"
    )
    parser.add_argument(
        "--settlement",
        choices=[s.value for s in Settlement],
        default=Settlement.CONFIRM.value,
        help="how the workers settle ingress messages (docs/scaling.md)",
    )
    parser.add_argument(
        "--all-classes",
        action="store_true",
        help="throughput for every message class also in a quick run",
    )
    parser.add_argument("--no-profile", action="store_true", help="do not run py-spy")
    parser.add_argument("--no-scale", action="store_true", help="skip the growing world")
    parser.add_argument("--no-large", action="store_true", help="skip the large messages")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP ingress")
    parser.add_argument("--profile-out", type=Path, help="keep py-spy's collapsed stacks here")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = Options(
        quick=args.quick,
        amqp_url=args.amqp_url,
        workers=args.workers,
        count=args.count,
        backlog=args.backlog,
        latency_seconds=args.latency_seconds,
        profile=not args.no_profile,
        profile_out=args.profile_out,
        loop=args.loop,
        settlement=Settlement(args.settlement),
        prefetch=args.prefetch,
        all_classes=True if args.all_classes else None,
        scale=not args.no_scale,
        large=not args.no_large,
        http=not args.no_http,
    )
    figures = asyncio.run(measure(options))
    print(render(figures))
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
