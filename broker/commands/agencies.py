"""``xbroker agencies provision``: one RabbitMQ user per party of the directory.

Passwords go to ``<state_dir>/amqp-credentials.json`` (mode 0600, with a ready AMQP URL
per party) and are never printed; the output, plain or ``--json``, shows users and
permissions only. Running it again keeps the passwords (``--rotate`` renews them) and
re-applies the permissions, so a changed directory is followed by running it again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from broker.commands._common import settings_from
from broker.errors import ConfigurationError
from broker.tenancy import accounts_for, credentials_path, provision
from broker.tenancy_backends import backend_for
from routing import Directory, DirectoryError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``xbroker agencies provision``."""
    agencies = subparsers.add_parser("agencies", help="RabbitMQ users of the directory's parties")
    actions = agencies.add_subparsers(dest="agencies_command", required=True, metavar="ACTION")
    prov = actions.add_parser(
        "provision", help="create or update one RabbitMQ user per agency and author"
    )
    prov.add_argument(
        "--management-url",
        default=None,
        help="management HTTP API of a remote node (http://admin:password@host:15672); "
        "default: $XBROKER_MANAGEMENT_URL, else rabbitmqctl on the local node",
    )
    prov.add_argument("--only", nargs="+", default=(), metavar="KENNUNG", help="these parties")
    prov.add_argument("--rotate", action="store_true", help="generate new passwords")
    prov.add_argument(
        "--credentials", type=Path, default=None, help="default: <state_dir>/amqp-credentials.json"
    )
    prov.add_argument("--user-prefix", default="", help="prefix of every user name")
    prov.add_argument("--json", action="store_true", help="machine-readable output")
    prov.set_defaults(func=_provision)


def _provision(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(args)
        try:
            directory = Directory.load(settings.directory, settings.party_certificate_dir)
        except DirectoryError as exc:
            raise ConfigurationError(str(exc)) from exc
        accounts = accounts_for(directory, only=args.only, user_prefix=args.user_prefix)
        backend = backend_for(
            settings.amqp_url, args.management_url or os.environ.get("XBROKER_MANAGEMENT_URL")
        )
        credentials = args.credentials or credentials_path(settings.state_dir)
        done = provision(
            accounts,
            backend,
            amqp_url=settings.amqp_url,
            credentials=credentials,
            rotate=args.rotate,
        )
    except ConfigurationError as exc:
        print(f"xbroker: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(
            json.dumps(
                {"credentials": str(credentials), "accounts": [d.summary() for d in done]},
                indent=2,
            )
        )
        return 0
    for item in done:
        p = item.account.permissions
        state = "new password" if item.new_password else "password kept"
        print(f"{item.account.user} ({', '.join(item.account.roles)}; {state})")
        print(f"    configure {p.configure}\n    write     {p.write}\n    read      {p.read}")
    print(f"credentials (mode 0600): {credentials}")
    return 0
