"""``xbroker publish FILE|DIR...``: sign as the portal, publish, print the receipts."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from broker.app import load_parts, party_signer
from broker.commands._common import run_async, settings_from
from broker.commands._receipts import describe_receipt
from broker.portal import Portal
from broker.receipts import Receipt

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("publish", help="sign and publish submissions, print their receipts")
    parser.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR")
    parser.add_argument("--as", dest="author", help="author Behördenkennung (default: portal)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for receipts")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait per run")
    parser.add_argument("--signed", action="store_true", help="files are already signed")
    parser.set_defaults(func=_publish)


def _files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        out.extend(sorted(path.glob("*.xml")) if path.is_dir() else [path])
    return out


def _publish(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    files = _files(args.paths)

    async def main() -> int:
        parts = load_parts(settings)
        author = args.author or settings.portal_kennung

        def show(receipt: Receipt) -> None:
            print(describe_receipt(receipt, parts.directory), flush=True)

        portal = Portal(
            settings.amqp_url,
            author,
            party_signer(settings, author),
            parts.verifier(),
            confirm_timeout=settings.confirm_timeout_seconds,
            on_receipt=show,
            catalog=parts.catalog,
        )
        await portal.start(receive=not args.no_wait)
        try:
            uuids = []
            for index, file in enumerate(files, 1):
                uuid = await portal.submit(file.read_bytes(), sign=not args.signed)
                uuids.append(uuid)
                print(f"published {file} as {uuid} ({index}/{len(files)})", file=sys.stderr)
            if args.no_wait:
                return 0
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(portal.wait_final(u, args.timeout) for u in uuids)),
                    args.timeout,
                )
            except TimeoutError:
                open_ = [u for u in uuids if not portal.state(u).final]
                print(f"no final receipt within {args.timeout} s for: {', '.join(open_)}")
                return 1
            rejected = [
                u
                for u in uuids
                if any(r.kind.value == "rejected" for r in portal.state(u).receipts)
            ]
            return 1 if rejected else 0
        finally:
            await portal.close()

    return run_async(main)
