"""The ``xbroker`` command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main"]

# Each module in broker.commands registers its own subcommands.
_COMMAND_MODULES = (
    "broker.commands.pki",
    "broker.commands.run",
    "broker.commands.publish",
    "broker.commands.subscribe",
    "broker.commands.schemas",
    "broker.commands.sign",
    "broker.commands.devnode",
    "broker.commands.devdb",
    "broker.commands.demo",
    "broker.commands.status",
    "broker.commands.audit",
    "broker.commands.agencies",
    "broker.commands.doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xbroker", description="Broker for signed XÖV messages between portal and agencies."
    )
    parser.add_argument(
        "--config",
        default=None,
        help="settings file (TOML); default: $XBROKER_CONFIG or examples/xbroker.toml",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _COMMAND_MODULES:
        # A command module that does not import is a broken installation: fail here,
        # loudly, rather than offer a CLI with a subcommand quietly missing.
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if _command(argv) == "run":
        # Before the command modules load (a second or two): a SIGTERM from then on stops
        # the worker cleanly instead of killing it (broker.commands.signals).
        from broker.commands.signals import StopSignal

        StopSignal.install()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


def _command(argv: Sequence[str] | None) -> str | None:
    """The subcommand named in ``argv``, read without loading the command modules."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--config")
    early.add_argument("command", nargs="?")
    known, _ = early.parse_known_args(argv)
    return known.command if isinstance(known.command, str) else None


if __name__ == "__main__":
    sys.exit(main())
