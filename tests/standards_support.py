"""Helpers the standards tests share: editing a fixture copy, running ``xbroker schemas``."""

from __future__ import annotations

import argparse
from pathlib import Path

from broker.commands import schemas

__all__ = ["edit", "run_schemas"]


def edit(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` in a file; ``old`` must be there."""
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def run_schemas(*argv: str) -> int:
    """Run ``xbroker ARGV`` with only the ``schemas`` command registered; its exit code."""
    parser = argparse.ArgumentParser(prog="xbroker")
    schemas.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code
