"""``xbroker agencies provision``: one RabbitMQ user per party of the directory.

Passwords go to ``<state_dir>/amqp-credentials.json`` (mode 0600, with a ready AMQP URL
per party) and are never printed; the output, plain or ``--json``, shows users and
permissions only. Running it again keeps the passwords (``--rotate`` renews them) and
re-applies the permissions, so a changed directory is followed by running it again.

With ``--tls`` the parties log in with TLS client certificates instead (EXTERNAL): their
users get no password and are named by the certificates' CN; the credentials file gets
``amqps://`` URLs naming each party's certificate, key and the node's CA. On the local
node the TLS listener, its CA and missing client certificates (issued from the node CA
into ``<state_dir>/tls-clients/``) come from `broker.devnode`; for another node pass
``--amqps-url``, ``--server-ca`` and a ``--client-certs`` folder holding
``<kennung with _ for :>.crt|.key`` from the deployment's CA.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from broker import devnode
from broker.commands._common import settings_from
from broker.errors import ConfigurationError
from broker.ops.tenancy.accounts import (
    Account,
    Provisioned,
    accounts_for,
    credentials_path,
    provision,
    vhost_of,
)
from broker.ops.tenancy.backends import ManagementApiBackend, RabbitmqctlBackend, backend_for
from broker.ops.tenancy.tls import IssueClientCertificate, provision_tls
from broker.settings import Settings
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
    prov.add_argument(
        "--tls", action="store_true", help="log in with TLS client certificates (EXTERNAL)"
    )
    prov.add_argument(
        "--amqps-url",
        default=None,
        help="with --tls: the node's TLS listener, amqps://host:5671/vhost "
        "(default on the local node: its TLS port and the vhost of amqp_url)",
    )
    prov.add_argument(
        "--server-ca",
        type=Path,
        default=None,
        help="with --tls: CA file the parties verify the node with (local node: its CA)",
    )
    prov.add_argument(
        "--client-certs",
        type=Path,
        default=None,
        help="with --tls: folder of <file-id>.crt|.key; default <state_dir>/tls-clients "
        "(on the local node missing ones are issued from the node CA)",
    )
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
        if args.tls:
            done = _provision_tls(args, settings, accounts, backend, credentials)
        else:
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
        if args.tls:
            state = "client certificate"
        else:
            state = "new password" if item.new_password else "password kept"
        print(f"{item.account.user} ({', '.join(item.account.roles)}; {state})")
        print(f"    configure {p.configure}\n    write     {p.write}\n    read      {p.read}")
    print(f"credentials (mode 0600): {credentials}")
    return 0


def _provision_tls(
    args: argparse.Namespace,
    settings: Settings,
    accounts: list[Account],
    backend: RabbitmqctlBackend | ManagementApiBackend,
    credentials: Path,
) -> list[Provisioned]:
    """Certificate users: the local node supplies what a remote one must be told."""
    amqps_base, server_ca = args.amqps_url, args.server_ca
    issue: IssueClientCertificate | None = None
    if isinstance(backend, RabbitmqctlBackend):
        node = devnode.ensure_node()  # restarts a node that predates its TLS listener
        amqps_base = amqps_base or node.tls_url_for_vhost(vhost_of(settings.amqp_url))
        server_ca = server_ca or node.tls_ca_file
        issue = devnode.issue_client_certificate
    if not amqps_base or server_ca is None:
        raise ConfigurationError(
            "--tls on a node other than the local one needs --amqps-url "
            "(amqps://host:5671/vhost) and --server-ca (the CA of the node's certificate)"
        )
    return provision_tls(
        accounts,
        backend,
        amqps_base=amqps_base,
        server_ca=server_ca,
        cert_dir=args.client_certs or settings.state_dir / "tls-clients",
        credentials=credentials,
        issue=issue,
    )
