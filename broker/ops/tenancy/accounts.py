"""Per-agency tenancy: one RabbitMQ user per party, allowed only what its role needs.

Agencies must not see each other's mail. RabbitMQ enforces that, not the SDK: each
party of the directory connects as its own user, whose permissions (three regexes,
matched against whole resource names) are derived from the directory:

=================  ======================================  =================================
role               read (consume)                          write (publish)
=================  ======================================  =================================
receiving agency   ``agency.<kennung>.inbox`` (and         ``xbroker.delivery-receipts``
                   ``.test`` when it has a test inbox)
author (portal)    ``receipts.<kennung>``                  ``xbroker.ingress``
=================  ======================================  =================================

An agency that also authors (a confirmation back to the portal) holds both rows.
Nobody but the broker may configure anything (``^$``): the SDKs only declare passively,
which RabbitMQ allows without the configure permission. Webhook agencies have no AMQP
identity and get no user, nor do XTA agencies: they send and fetch over XTA. The
Behördenkennung goes into the regexes escaped: its dots must not match any character.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from broker.amqp import topology
from broker.errors import ConfigurationError
from routing import Agency, AmqpEndpoint, Directory

__all__ = [
    "NOTHING",
    "Account",
    "Permissions",
    "ProvisionBackend",
    "Provisioned",
    "account_for",
    "accounts_for",
    "amqp_url_for",
    "credentials_path",
    "generate_password",
    "provision",
    "read_credentials",
    "vhost_of",
    "write_credentials",
]

NOTHING = "^$"  # RabbitMQ's way to grant no resource at all
CREDENTIALS_FILE = "amqp-credentials.json"


@dataclass(frozen=True, slots=True)
class Permissions:
    """RabbitMQ's three permission regexes on one virtual host."""

    configure: str
    write: str
    read: str


@dataclass(frozen=True, slots=True)
class Account:
    """The RabbitMQ user of one party of the directory."""

    kennung: str
    user: str
    roles: tuple[str, ...]  # "agency", "author"
    permissions: Permissions


class ProvisionBackend(Protocol):
    """Where users are made: rabbitmqctl on the local node, or the management HTTP API."""

    def put_user(self, user: str, password: str) -> None: ...

    def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None: ...

    def delete_user(self, user: str) -> None: ...


def _alternatives(names: Sequence[str]) -> str:
    if not names:
        return NOTHING
    return "^(" + "|".join(re.escape(n) for n in names) + ")$"


def account_for(agency: Agency, *, user_prefix: str = "") -> Account | None:
    """The account ``agency`` needs, or None when it has no AMQP role."""
    reads: list[str] = []
    writes: list[str] = []
    roles: list[str] = []
    if topology.has_inbox(agency) and isinstance(agency.endpoint, AmqpEndpoint):
        roles.append("agency")
        reads.append(topology.agency_queue(agency.kennung))
        if agency.endpoint.test:
            reads.append(topology.agency_queue(agency.kennung, test=True))
        writes.append(topology.DELIVERY_RECEIPT_EXCHANGE)
    if topology.has_receipt_queue(agency):  # an author that speaks XTA sends over XTA
        roles.append("author")
        reads.append(topology.receipt_queue(agency.kennung))
        writes.append(topology.INGRESS_EXCHANGE)
    if not roles:
        return None
    return Account(
        kennung=agency.kennung,
        user=f"{user_prefix}{agency.kennung}",
        roles=tuple(roles),
        permissions=Permissions(
            configure=NOTHING, write=_alternatives(writes), read=_alternatives(reads)
        ),
    )


def accounts_for(
    directory: Directory, *, only: Iterable[str] = (), user_prefix: str = ""
) -> list[Account]:
    """The accounts of the directory (or of the kennungen in ``only``)."""
    wanted = set(only)
    unknown = wanted - {a.kennung for a in directory}
    if unknown:
        raise ConfigurationError(f"not in the directory: {', '.join(sorted(unknown))}")
    accounts = []
    for agency in directory:
        if wanted and agency.kennung not in wanted:
            continue
        account = account_for(agency, user_prefix=user_prefix)
        if account is not None:
            accounts.append(account)
    return accounts


_PASSWORD_ALPHABET = string.ascii_letters + string.digits


def generate_password() -> str:
    """About 256 bits from the OS's CSPRNG, letters and digits only: it goes into AMQP
    URLs, and rabbitmqctl would read a password starting with ``-`` as an option."""
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(43))


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URL names ("/" when its path is empty)."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def amqp_url_for(amqp_url: str, user: str, password: str) -> str:
    """``amqp_url`` with another user's credentials (percent-encoded: a kennung has ':')."""
    parts = urlsplit(amqp_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def credentials_path(state_dir: Path) -> Path:
    return state_dir / CREDENTIALS_FILE


def read_credentials(path: Path) -> dict[str, dict[str, str]]:
    """The credentials file: kennung → {user, password, amqp_url}; empty when absent.

    A party provisioned for certificate login (`broker.ops.tenancy.tls`) has no password but
    ``auth`` = ``external`` and its ``certfile``, ``keyfile`` and ``cafile``.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{path}: cannot read credentials: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: not a credentials file")
    return data


def write_credentials(path: Path, data: Mapping[str, object]) -> None:
    """Write the credentials file readable by the owner only, from the first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2, sort_keys=True)
        out.write("\n")
    os.chmod(tmp, 0o600)  # an existing tmp file keeps its old mode through O_CREAT
    os.replace(tmp, path)


@dataclass(frozen=True, slots=True)
class Provisioned:
    account: Account
    amqp_url: str  # with the password: only ever written to the 0600 file
    new_password: bool

    def summary(self) -> dict[str, object]:
        """What may be shown on a terminal or in logs: no password."""
        return {**asdict(self.account), "new_password": self.new_password}


def provision(
    accounts: Sequence[Account],
    backend: ProvisionBackend,
    *,
    amqp_url: str,
    credentials: Path,
    rotate: bool = False,
) -> list[Provisioned]:
    """Create or update each account's user and permissions on ``amqp_url``'s vhost.

    Passwords already in ``credentials`` are kept unless ``rotate``; new ones are
    generated. The file is rewritten with mode 0600 before any user is touched, so a
    password RabbitMQ knows is never one nobody wrote down.
    """
    vhost = vhost_of(amqp_url)
    stored = read_credentials(credentials)
    done: list[Provisioned] = []
    for account in accounts:
        known = stored.get(account.kennung, {})
        reuse = not rotate and known.get("user") == account.user and known.get("password")
        password = str(known["password"]) if reuse else generate_password()
        url = amqp_url_for(amqp_url, account.user, password)
        stored[account.kennung] = {"user": account.user, "password": password, "amqp_url": url}
        done.append(Provisioned(account, url, new_password=not reuse))
    write_credentials(credentials, stored)
    for item in done:
        backend.put_user(item.account.user, stored[item.account.kennung]["password"])
        backend.set_permissions(vhost, item.account.user, item.account.permissions)
    return done
