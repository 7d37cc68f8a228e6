"""provision_tls decides everything from the certificates before it touches a user."""

from __future__ import annotations

import stat
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from broker.errors import ConfigurationError
from broker.ops.tenancy.accounts import Account, Permissions, read_credentials
from broker.ops.tenancy.tls import client_certificate_paths, provision_tls
from signing.devpki import create_ca, issue_tls_certificate

AMQPS = "amqps://rabbit.example:5671/xbroker"
KENNUNG = "psw:02000000"
ACCOUNT = Account(KENNUNG, f"dev-{KENNUNG}", ("agency",), Permissions("^$", "^x$", "^y$"))


class RecordingBackend:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def put_certificate_user(self, user: str) -> None:
        self.calls.append(("user", user))

    def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None:
        self.calls.append(("permissions", vhost, user, permissions.read))


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    create_ca(tmp_path / "ca", "deployment CA")
    return tmp_path / "ca"


def _certificate(ca: Path, folder: Path, common_name: str) -> None:
    cert, key = client_certificate_paths(folder, KENNUNG)
    issue_tls_certificate(ca, common_name, cert, key, purpose="client")
    key.unlink()  # the operator has the agency's certificate, not its key


def _provision(folder: Path, backend: RecordingBackend, credentials: Path) -> None:
    provision_tls(
        [ACCOUNT],
        backend,
        amqps_base=AMQPS,
        server_ca=folder / "server-ca.pem",
        cert_dir=folder,
        credentials=credentials,
    )


def test_a_certificate_user_is_named_by_the_cn_and_gets_the_account_permissions(
    ca: Path, tmp_path: Path
) -> None:
    _certificate(ca, tmp_path / "certs", ACCOUNT.user)
    backend = RecordingBackend()

    _provision(tmp_path / "certs", backend, tmp_path / "c.json")

    assert backend.calls == [
        ("user", ACCOUNT.user),
        ("permissions", "xbroker", ACCOUNT.user, "^y$"),
    ]


def test_the_credentials_file_holds_a_private_external_url(ca: Path, tmp_path: Path) -> None:
    _certificate(ca, tmp_path / "certs", ACCOUNT.user)

    _provision(tmp_path / "certs", RecordingBackend(), tmp_path / "c.json")

    entry = read_credentials(tmp_path / "c.json")[KENNUNG]
    query = parse_qs(urlsplit(entry["amqp_url"]).query)
    assert entry["amqp_url"].startswith(AMQPS + "?") and "password" not in entry
    assert query["auth"] == ["external"]
    assert query["keyfile"] == [str((tmp_path / "certs" / "psw_02000000.key").resolve())]
    assert stat.S_IMODE((tmp_path / "c.json").stat().st_mode) == 0o600


def test_a_certificate_with_another_cn_is_refused_before_any_user_is_made(
    ca: Path, tmp_path: Path
) -> None:
    _certificate(ca, tmp_path / "certs", KENNUNG)  # without the account's prefix
    backend = RecordingBackend()

    with pytest.raises(ConfigurationError, match="has CN 'psw:02000000'"):
        _provision(tmp_path / "certs", backend, tmp_path / "c.json")

    assert backend.calls == [] and not (tmp_path / "c.json").exists()


def test_a_missing_certificate_is_refused_when_none_may_be_issued(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no client certificate for psw:02000000"):
        _provision(tmp_path / "certs", RecordingBackend(), tmp_path / "c.json")
