"""Where `broker.ops.tenancy.accounts` makes users: the local node's rabbitmqctl, or the HTTP API.

``rabbitmqctl`` reaches only the node this checkout started (`broker.devnode`); a remote
node (another host, a cluster, a container) is managed through its management HTTP API,
the one interface every RabbitMQ deployment exposes to an operator. Anything else is a
configuration error that says which of the two to provide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from broker import devnode
from broker.errors import ConfigurationError
from broker.ops.tenancy.accounts import Permissions, generate_password

__all__ = ["ManagementApiBackend", "RabbitmqctlBackend", "backend_for"]


class RabbitmqctlBackend:
    """The project-local node, through rabbitmqctl and its Erlang cookie.

    The password is an argument of the rabbitmqctl process, visible to local users in
    the process list for the moment it runs: acceptable for a development node only.
    """

    def __init__(self, root: Path | None = None) -> None:
        self._root = root

    def put_user(self, user: str, password: str) -> None:
        try:
            devnode.rabbitmqctl("add_user", user, password, root=self._root)
        except devnode.RabbitmqctlError as exc:
            if "already exists" not in str(exc):
                raise ConfigurationError(f"cannot create user {user}: {exc}") from exc
            devnode.rabbitmqctl("change_password", user, password, root=self._root)

    def put_certificate_user(self, user: str) -> None:
        """A user without a password: it can log in with a client certificate only."""
        try:
            devnode.rabbitmqctl("add_user", user, generate_password(), root=self._root)
        except devnode.RabbitmqctlError as exc:
            if "already exists" not in str(exc):
                raise ConfigurationError(f"cannot create user {user}: {exc}") from exc
        devnode.rabbitmqctl("clear_password", user, root=self._root)

    def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None:
        devnode.rabbitmqctl(
            "set_permissions",
            "-p",
            vhost,
            user,
            permissions.configure,
            permissions.write,
            permissions.read,
            root=self._root,
        )

    def delete_user(self, user: str) -> None:
        devnode.rabbitmqctl("delete_user", user, root=self._root)

    def list_permissions(self, vhost: str) -> dict[str, Permissions]:
        """user → permissions on ``vhost``, as RabbitMQ holds them."""
        out = devnode.rabbitmqctl("list_permissions", "-p", vhost, root=self._root)
        found: dict[str, Permissions] = {}
        for line in out.splitlines():
            fields = line.split("\t")
            if len(fields) == 4 and fields[0] != "user":
                found[fields[0]] = Permissions(fields[1], fields[2], fields[3])
        return found


class ManagementApiBackend:
    """A node's management HTTP API (``http(s)://admin:password@host:15672``)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        if not parts.hostname or parts.username is None or parts.password is None:
            raise ConfigurationError(
                "the management URL must name a host and an administrator: "
                "http://user:password@host:15672"
            )
        netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
        self._base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._auth = (parts.username, parts.password)
        self._timeout = timeout

    def list_permissions(self, vhost: str) -> dict[str, Permissions]:
        """user → permissions on ``vhost``, as RabbitMQ holds them."""
        rows = self._call("GET", f"/api/vhosts/{quote(vhost, safe='')}/permissions")
        return {
            str(row["user"]): Permissions(
                str(row["configure"]), str(row["write"]), str(row["read"])
            )
            for row in rows
            if isinstance(row, dict)
        }

    def _call(self, method: str, path: str, body: dict[str, str] | None = None) -> Any:
        try:
            response = httpx.request(
                method,
                self._base + path,
                json=body,
                auth=self._auth,
                timeout=self._timeout,
                trust_env=False,
            )
        except httpx.HTTPError as exc:
            raise ConfigurationError(f"management API {method} {path}: {exc}") from exc
        if response.status_code >= 300:
            raise ConfigurationError(
                f"management API {method} {path}: HTTP {response.status_code} {response.text}"
            )
        return response.json() if method == "GET" else None

    def put_user(self, user: str, password: str) -> None:
        self._call("PUT", f"/api/users/{quote(user, safe='')}", {"password": password, "tags": ""})

    def put_certificate_user(self, user: str) -> None:
        """A user without a password (an empty hash): it can log in with a certificate only."""
        self._call("PUT", f"/api/users/{quote(user, safe='')}", {"password_hash": "", "tags": ""})

    def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None:
        self._call(
            "PUT",
            f"/api/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
            {
                "configure": permissions.configure,
                "write": permissions.write,
                "read": permissions.read,
            },
        )

    def delete_user(self, user: str) -> None:
        self._call("DELETE", f"/api/users/{quote(user, safe='')}")


def backend_for(
    amqp_url: str, management_url: str | None, *, root: Path | None = None
) -> RabbitmqctlBackend | ManagementApiBackend:
    """The management API when a URL is given, else rabbitmqctl if ``amqp_url`` is the
    local node of this checkout; otherwise say what is missing."""
    if management_url:
        return ManagementApiBackend(management_url)
    info = devnode.node_status(root)
    parts = urlsplit(amqp_url)
    if (
        info is not None
        and parts.hostname in {"127.0.0.1", "localhost"}
        and (parts.port or 5672) == info.amqp_port
    ):
        return RabbitmqctlBackend(root)
    raise ConfigurationError(
        f"{parts.hostname}:{parts.port or 5672} is not this checkout's local RabbitMQ node; "
        "pass --management-url http://admin:password@host:15672 (or set "
        "XBROKER_MANAGEMENT_URL) to provision users on it"
    )
