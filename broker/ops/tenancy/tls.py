"""Parties that log in with a TLS client certificate (EXTERNAL) instead of a password.

RabbitMQ's ``rabbitmq_auth_mechanism_ssl`` takes the user name from the certificate the
client presented during the handshake (``ssl_cert_login_from = common_name``: its CN),
so a party's user is named by its certificate, has no password, and holds the same
permissions as the password account of `broker.ops.tenancy.accounts`. A certificate whose CN is not
the account's user name is refused here rather than provisioned under a name nobody
can log in as.

Client certificates are files, one pair per party in a folder, named like the
development PKI's party files (``psw_02000000.crt|.key``). On the local node missing
ones can be issued from the node's own CA (`broker.devnode.issue_client_certificate`);
in production the deployment's CA issues them and the node trusts that CA.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.x509.oid import NameOID

from broker.devnode import amqps_url
from broker.errors import ConfigurationError
from broker.ops.tenancy.accounts import (
    Account,
    Permissions,
    Provisioned,
    read_credentials,
    vhost_of,
    write_credentials,
)
from signing.keyfiles import file_id

__all__ = [
    "CertificateUserBackend",
    "IssueClientCertificate",
    "certificate_user",
    "client_certificate_paths",
    "provision_tls",
]

IssueClientCertificate = Callable[[str, Path, Path], None]
"""``issue(common_name, cert_path, key_path)``: make a missing client certificate."""


class CertificateUserBackend(Protocol):
    """Where users without a password are made (both backends of `broker.ops.tenancy.backends`)."""

    def put_certificate_user(self, user: str) -> None: ...

    def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None: ...


def client_certificate_paths(cert_dir: Path, kennung: str) -> tuple[Path, Path]:
    """Certificate and key file of a party's TLS client certificate in ``cert_dir``."""
    stem = cert_dir / file_id(kennung)
    return stem.with_suffix(".crt"), stem.with_suffix(".key")


def certificate_user(cert_path: Path) -> str:
    """The RabbitMQ user a client certificate logs in as: its subject CN."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{cert_path}: not a readable PEM certificate: {exc}") from exc
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise ConfigurationError(f"{cert_path}: needs exactly one CN, the RabbitMQ user name")
    return str(names[0].value)


def _certificate_of(
    account: Account, cert_dir: Path, issue: IssueClientCertificate | None
) -> tuple[Path, Path]:
    cert, key = client_certificate_paths(cert_dir, account.kennung)
    # Only the certificate must be here: the key is the agency's; the URL names its place.
    if not cert.exists():
        if issue is None:
            raise ConfigurationError(
                f"no client certificate for {account.kennung}: expected {cert} "
                f"with CN {account.user}"
            )
        issue(account.user, cert, key)
    user = certificate_user(cert)
    if user != account.user:
        raise ConfigurationError(
            f"{cert} has CN {user!r}, but {account.kennung} logs in as {account.user!r}; "
            "issue it with that CN (or provision with the matching --user-prefix)"
        )
    return cert.resolve(), key.resolve()  # the URL outlives the working directory


def provision_tls(
    accounts: Sequence[Account],
    backend: CertificateUserBackend,
    *,
    amqps_base: str,
    server_ca: Path,
    cert_dir: Path,
    credentials: Path,
    issue: IssueClientCertificate | None = None,
) -> list[Provisioned]:
    """Create each account's certificate user (no password) with its permissions.

    ``amqps_base`` is ``amqps://host:port/vhost`` of the node's TLS listener; the
    permissions are set on its vhost. ``server_ca`` is what the parties verify the node's
    certificate with. Every certificate is checked (or issued) before the credentials file
    is written and before any user is touched; each party's entry in ``credentials`` gets
    a ready ``amqps://...?auth=external&cafile=..&certfile=..&keyfile=..`` URL.
    """
    vhost = vhost_of(amqps_base)
    certificates = {a.kennung: _certificate_of(a, cert_dir, issue) for a in accounts}
    stored = read_credentials(credentials)
    done: list[Provisioned] = []
    for account in accounts:
        cert, key = certificates[account.kennung]
        url = amqps_url(amqps_base, cafile=server_ca.resolve(), certfile=cert, keyfile=key)
        stored[account.kennung] = {
            "user": account.user,
            "auth": "external",
            "amqp_url": url,
            "certfile": str(cert),
            "keyfile": str(key),
            "cafile": str(server_ca.resolve()),
        }
        done.append(Provisioned(account, url, new_password=False))
    write_credentials(credentials, stored)
    for item in done:
        backend.put_certificate_user(item.account.user)
        backend.set_permissions(vhost, item.account.user, item.account.permissions)
    return done
