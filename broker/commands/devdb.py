"""``xbroker db``: the project-local PostgreSQL cluster (see ``broker.devdb``).

``xbroker db ensure --print-url`` is what the Makefile calls: it prints only the database
URL on stdout, so ``XBROKER_DATABASE_URL=$(xbroker db ensure --print-url)`` works;
everything else goes to stderr. When ``XBROKER_DATABASE_URL`` already names a server that
answers, that URL is printed and nothing is started.

``python -m broker.commands.devdb ARGS`` is the same as ``xbroker db ARGS`` without
loading the other commands.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from broker import devdb

__all__ = ["main", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``xbroker db {ensure,stop,status,probe}``."""
    db = subparsers.add_parser("db", help="the project-local PostgreSQL cluster")
    actions = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")

    ensure = actions.add_parser("ensure", help="reuse the running cluster or start it")
    ensure.add_argument("--print-url", action="store_true", help="print only the URL on stdout")
    ensure.set_defaults(func=_ensure)

    stop = actions.add_parser("stop", help="stop the cluster (its data is kept)")
    stop.set_defaults(func=_stop)

    status = actions.add_parser("status", help="is the cluster running, and where")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=_status)

    probe = actions.add_parser("probe", help="exit 0 if a PostgreSQL server answers at URL")
    probe.add_argument("url", nargs="?", default=None, help="default: $XBROKER_DATABASE_URL")
    probe.set_defaults(func=_probe)


def _ensure(args: argparse.Namespace) -> int:
    url = os.environ.get("XBROKER_DATABASE_URL")
    if url and devdb.postgres_reachable(url):
        print("using XBROKER_DATABASE_URL; no local cluster started", file=sys.stderr)
        print(url)
        return 0
    if url:
        print("XBROKER_DATABASE_URL does not answer; using the local cluster", file=sys.stderr)
    print("ensuring the local PostgreSQL cluster ...", file=sys.stderr)
    try:
        info = devdb.ensure_cluster()
    except devdb.DevDatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.print_url:
        print(f"PostgreSQL ready on port {info.port} (log: {info.log_file})", file=sys.stderr)
        print(info.url)
    else:
        _describe(info)
    return 0


def _stop(args: argparse.Namespace) -> int:
    try:
        stopped = devdb.stop_cluster()
    except devdb.DevDatabaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("stopped" if stopped else "not running", file=sys.stderr)
    return 0


def _status(args: argparse.Namespace) -> int:
    info = devdb.cluster_status()
    if args.json:
        print(json.dumps({"running": info is not None, **(info.as_json() if info else {})}))
    elif info is None:
        print("not running")
    else:
        _describe(info)
    return 0 if info is not None else 3


def _probe(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("XBROKER_DATABASE_URL")
    return 0 if url and devdb.postgres_reachable(url) else 1


def _describe(info: devdb.ClusterInfo) -> None:
    print(f"server    PostgreSQL (pid {info.pid}), {info.bin_dir}")
    print(f"url       {info.url}")
    print(f"data      {info.data_dir}")
    print(f"log       {info.log_file}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``db ACTION ...`` on its own: ``python -m broker.commands.devdb ensure``."""
    parser = argparse.ArgumentParser(prog="python -m broker.commands.devdb")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["db", *(sys.argv[1:] if argv is None else argv)])
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
