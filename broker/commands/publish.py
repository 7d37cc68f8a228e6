"""``xbroker publish FILE|DIR...``: sign as the portal, publish, print the receipts.

A bulk run shows a progress bar on stderr when stderr is a terminal (or with
``--progress``); ``--json`` prints one JSON document with every message's receipts on
stdout instead of a line per receipt, for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from broker.app import load_parts, party_signer
from broker.commands._common import run_async, settings_from
from broker.commands._receipts import describe_receipt
from broker.commands.progress import Progress, wanted
from broker.receipts.document import Receipt
from broker.sdk.portal import Portal, SubmissionState
from signing import SigningError, Verifier, parse_untrusted

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("publish", help="sign and publish submissions, print their receipts")
    parser.add_argument("paths", nargs="+", type=Path, metavar="FILE|DIR")
    parser.add_argument(
        "--as",
        dest="author",
        help="author Behördenkennung (default: the portal; with --signed, the files' signer)",
    )
    parser.add_argument("--no-wait", action="store_true", help="do not wait for receipts")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait per run")
    parser.add_argument("--signed", action="store_true", help="files are already signed")
    parser.add_argument(
        "--progress", action="store_true", help="show a progress bar even when not on a terminal"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=_publish)


def _signers(files: list[Path], verifier: Verifier) -> set[str]:
    """The Behördenkennungen that signed ``files`` (a file that does not verify: none)."""
    found: set[str] = set()
    for file in files:
        try:
            kennung = verifier.verify_now(parse_untrusted(file.read_bytes())).subject_kennung
        except (SigningError, OSError):
            continue
        if kennung:
            found.add(kennung)
    return found


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
        if args.signed and not args.author:
            # Receipts go to the signer's queue: listen there, not on the portal's.
            signers = _signers(files, parts.verifier())
            if len(signers) != 1:
                print(
                    "xbroker publish: --signed files of "
                    f"{', '.join(sorted(signers)) or 'no known signer'}: name the author "
                    "whose receipts to wait for with --as",
                    file=sys.stderr,
                )
                return 2
            author = signers.pop()

        def show(receipt: Receipt) -> None:
            print(describe_receipt(receipt, parts.directory), flush=True)

        portal = Portal(
            settings.rabbitmq_urls,
            author,
            party_signer(settings, author),
            parts.verifier(),
            confirm_timeout=settings.confirm_timeout_seconds,
            on_receipt=None if args.json else show,
            catalog=parts.catalog,
        )
        bar = Progress(len(files), sys.stderr, label="published")
        show_bar = wanted(sys.stderr, forced=args.progress)
        await portal.start(receive=not args.no_wait)
        try:
            uuids = []
            for index, file in enumerate(files, 1):
                uuid = await portal.submit(file.read_bytes(), sign=not args.signed)
                uuids.append(uuid)
                if show_bar:
                    bar.advance()
                else:
                    print(f"published {file} as {uuid} ({index}/{len(files)})", file=sys.stderr)
            if show_bar:
                bar.close()
            code = 0 if args.no_wait else await _wait(portal, uuids, args.timeout, args.json)
            if args.json:
                states = [portal.state(u) for u in uuids]
                json.dump(_results(files, states, code), sys.stdout, indent=2, ensure_ascii=False)
                print()
            return code
        finally:
            await portal.close()

    return run_async(main)


async def _wait(portal: Portal, uuids: list[str], timeout: float, quiet: bool) -> int:
    """Wait for every final receipt; 1 when one is missing or a message was rejected."""
    try:
        await asyncio.wait_for(
            asyncio.gather(*(portal.wait_final(u, timeout) for u in uuids)), timeout
        )
    except TimeoutError:
        open_ = [u for u in uuids if not portal.state(u).final]
        if not quiet:
            print(f"no final receipt within {timeout} s for: {', '.join(open_)}")
        return 1
    rejected = [
        u for u in uuids if any(r.kind.value == "rejected" for r in portal.state(u).receipts)
    ]
    return 1 if rejected else 0


def _results(files: list[Path], states: list[SubmissionState], code: int) -> dict[str, Any]:
    return {
        "ok": code == 0,
        "messages": [
            {
                "file": str(file),
                "uuid": state.uuid,
                "final": state.final,
                "receipts": [
                    {
                        "kind": r.kind.value,
                        "issuer": r.issuer,
                        "recipients": list(r.recipients),
                        "reason": r.reason,
                        "detail": r.detail,
                    }
                    for r in state.receipts
                ],
            }
            for file, state in zip(files, states, strict=True)
        ],
    }
