"""The local node's TLS listener: its certificate, and the CAs it trusts for client logins.

Everything lives in ``<base>/tls/``::

    ca/ca.crt  ca/ca.key     the node's own CA: issues the server certificate and
                             development client certificates (key mode 0600)
    server.crt server.key    the listener's certificate: CN localhost, subjectAltName
                             DNS localhost and IP 127.0.0.1 (what a client checks)
    client-cas/<name>.crt    further CAs whose client certificates may log in, added by
                             `trust_client_ca` (a deployment's agency CA)
    client-cas.pem           the bundle the node reads (``ssl_options.cacertfile``):
                             the node CA followed by every file of ``client-cas/``

Erlang's TLS keeps the PEM files it has read in a cache, so a rewritten bundle is not
seen by new connections until ``ssl:clear_pem_cache()`` runs in the node; a restart is
not needed (`broker.devnode.trust` does both).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from signing.certs import load_certificate
from signing.devpki import create_ca, issue_tls_certificate

__all__ = ["NODE_CA_NAME", "NodeTlsFolder"]

NODE_CA_NAME = "xbroker development node CA"
_SERVER_NAME = "localhost"
_LOOPBACK = "127.0.0.1"
_RENEW_BEFORE = timedelta(days=7)


@dataclass(frozen=True)
class NodeTlsFolder:
    """Paths of one node's TLS folder (derived from the folder, without I/O)."""

    folder: Path

    @property
    def ca_dir(self) -> Path:
        return self.folder / "ca"

    @property
    def ca_cert(self) -> Path:
        """What a client trusts to verify the node's server certificate (``cafile``)."""
        return self.ca_dir / "ca.crt"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def client_cas(self) -> Path:
        return self.folder / "client-cas"

    @property
    def bundle(self) -> Path:
        """The CAs whose client certificates the node accepts (``ssl_options.cacertfile``)."""
        return self.folder / "client-cas.pem"

    def ensure(self) -> None:
        """Make the CA, a current server certificate and the bundle, where missing."""
        if not self.ca_cert.exists():
            create_ca(self.ca_dir, NODE_CA_NAME)
        if _needs_server_cert(self.server_cert):
            issue_tls_certificate(
                self.ca_dir,
                _SERVER_NAME,
                self.server_cert,
                self.server_key,
                purpose="server",
                dns_names=[_SERVER_NAME],
                ip_addresses=[_LOOPBACK],
            )
        self.write_bundle()

    def client_ca(self, name: str) -> Path:
        """Where the trusted client CA called ``name`` is kept."""
        return self.client_cas / f"{name}.crt"

    def write_bundle(self) -> bool:
        """Rewrite the bundle from its parts; True if its content changed."""
        parts = [self.ca_cert, *sorted(self.client_cas.glob("*.crt"))]
        text = "".join(path.read_text().rstrip("\n") + "\n" for path in parts)
        if self.bundle.exists() and self.bundle.read_text() == text:
            return False
        tmp = self.bundle.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(self.bundle)  # the node never reads half a bundle
        return True


def _needs_server_cert(path: Path) -> bool:
    if not path.exists():
        return True
    return load_certificate(path).not_valid_after_utc - datetime.now(UTC) < _RENEW_BEFORE
