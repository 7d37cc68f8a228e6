"""Doctor's check of agency permissions: what RabbitMQ holds against what the directory
implies (`broker.ops.tenancy.accounts.account_for`), for every party that has been provisioned.

Read-only: it lists permissions through rabbitmqctl (the local node) or the management
HTTP API (``XBROKER_MANAGEMENT_URL``); it never connects as an agency or touches a queue.
"""

from __future__ import annotations

import asyncio
import os

from broker import devnode
from broker.errors import ConfigurationError
from broker.ops.doctor.findings import Finding, Status
from broker.ops.tenancy.accounts import accounts_for, credentials_path, read_credentials, vhost_of
from broker.ops.tenancy.backends import backend_for
from broker.settings import Settings
from routing import Directory

__all__ = ["check_permissions"]

_CHECK = "permissions"


async def check_permissions(settings: Settings, directory: Directory) -> list[Finding]:
    try:
        provisioned = read_credentials(credentials_path(settings.state_dir))
    except ConfigurationError as exc:
        return [Finding(_CHECK, Status.FAIL, str(exc), "run `xbroker agencies provision`")]
    if not provisioned:
        return [
            Finding(
                _CHECK,
                Status.SKIP,
                "no agency users provisioned: every party shares the broker's user",
                "for production, give each agency its own user: `xbroker agencies provision`",
            )
        ]
    try:
        backend = backend_for(settings.amqp_url, os.environ.get("XBROKER_MANAGEMENT_URL"))
        actual = await asyncio.to_thread(backend.list_permissions, vhost_of(settings.amqp_url))
    except (ConfigurationError, devnode.DevNodeError) as exc:
        return [Finding(_CHECK, Status.WARN, f"cannot read permissions: {exc}")]
    findings = []
    for account in accounts_for(directory):
        stored = provisioned.get(account.kennung)
        user = stored.get("user", account.user) if stored else account.user
        fix = f"`xbroker agencies provision --only {account.kennung}`"
        held = actual.get(user)
        if stored is None or held is None:
            findings.append(
                Finding(_CHECK, Status.FAIL, f"{account.kennung}: no RabbitMQ user {user}", fix)
            )
        elif held != account.permissions:
            findings.append(
                Finding(
                    _CHECK,
                    Status.FAIL,
                    f"{account.kennung}: user {user} may {held}, the directory implies "
                    f"{account.permissions}",
                    fix,
                )
            )
        else:
            findings.append(
                Finding(
                    _CHECK, Status.OK, f"{account.kennung}: user {user} as the directory implies"
                )
            )
    return findings
