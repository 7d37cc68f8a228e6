"""Which client certificates the local node accepts, changed while it runs.

A deployment's agencies hold certificates from its own CA; `trust_client_ca` adds that CA
to the bundle the node reads for client certificates and makes the running node read it
again (Erlang's PEM cache would otherwise keep the old bundle until a restart).
`issue_client_certificate` makes development certificates from the node CA, which the
node always trusts.
"""

from __future__ import annotations

import re
from pathlib import Path

from broker.devlocal import locked
from broker.devnode.ctl import _ctl
from broker.devnode.errors import DevNodeError
from broker.devnode.layout import _Layout, _read_state, _running_pid
from broker.devnode.tls import NodeTlsFolder
from signing.devpki import issue_tls_certificate

__all__ = ["distrust_client_ca", "issue_client_certificate", "trust_client_ca"]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def _checked_name(name: str) -> str:
    if not _SAFE_NAME.match(name):
        raise DevNodeError(f"not a usable CA name: {name!r} (letters, digits, '.', '_', '-')")
    return name


def _clear_pem_cache(layout: _Layout) -> None:
    """Make a running node read the bundle again for the next handshake."""
    ports = _read_state(layout)
    if ports is not None and _running_pid(layout) is not None:
        _ctl(layout, ports, "eval", "ssl:clear_pem_cache().")


def trust_client_ca(name: str, ca_pem: bytes, *, root: Path | None = None) -> None:
    """Accept client certificates issued by the CA ``ca_pem`` (PEM), stored as ``name``.

    Takes effect for the next handshake of the running node, without a restart.
    """
    if b"-----BEGIN CERTIFICATE-----" not in ca_pem:
        raise DevNodeError(f"CA {name!r} is not a PEM certificate")
    layout = _Layout.of(root)
    files = NodeTlsFolder(layout.tls_dir)
    with locked(layout.lock_file):
        files.ensure()
        files.client_cas.mkdir(parents=True, exist_ok=True)
        files.client_ca(_checked_name(name)).write_bytes(ca_pem)
        if files.write_bundle():
            _clear_pem_cache(layout)


def distrust_client_ca(name: str, *, root: Path | None = None) -> None:
    """Stop accepting client certificates of the CA stored as ``name`` (from the next handshake)."""
    layout = _Layout.of(root)
    files = NodeTlsFolder(layout.tls_dir)
    with locked(layout.lock_file):
        files.client_ca(_checked_name(name)).unlink(missing_ok=True)
        if files.bundle.exists() and files.write_bundle():
            _clear_pem_cache(layout)


def issue_client_certificate(
    common_name: str, cert_path: Path, key_path: Path, *, root: Path | None = None
) -> None:
    """A development client certificate from the node CA, which the node always trusts.

    Its CN is the RabbitMQ user it logs in as (``ssl_cert_login_from = common_name``).
    """
    files = NodeTlsFolder(_Layout.of(root).tls_dir)
    files.ensure()
    issue_tls_certificate(files.ca_dir, common_name, cert_path, key_path, purpose="client")
