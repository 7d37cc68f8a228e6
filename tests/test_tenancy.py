"""Per-agency RabbitMQ users: what each party may do, derived from the directory."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest

from broker.errors import ConfigurationError
from broker.ops.tenancy.accounts import (
    NOTHING,
    Account,
    Permissions,
    account_for,
    accounts_for,
    amqp_url_for,
    generate_password,
    provision,
    read_credentials,
    vhost_of,
)
from broker.ops.tenancy.backends import ManagementApiBackend, backend_for
from routing import Agency, AmqpEndpoint, Directory, Subscription, WebhookEndpoint, XtaEndpoint

URL = "amqp://guest:guest@127.0.0.1:5672/xbroker-test"


def _agency(
    kennung: str,
    *,
    accepts: bool = True,
    may_send: tuple[str, ...] = (),
    endpoint: AmqpEndpoint | WebhookEndpoint | XtaEndpoint | None = None,
) -> Agency:
    return Agency(
        kennung=kennung,
        name=kennung,
        certificates=(),
        accepts=(Subscription(type="meldung.*"),) if accepts else (),
        regions=(),
        notify=(),
        may_send=may_send,
        endpoint=endpoint or AmqpEndpoint(test=False),
    )


def _matches(pattern: str, name: str) -> bool:
    # RabbitMQ matches a permission regex anywhere in the name (re:run), like re.search.
    return re.search(pattern, name) is not None


def _account(agency: Agency) -> Account:
    account = account_for(agency)
    assert account is not None
    return account


class RecordingBackend:
    """Remembers the users and permissions it was asked to set."""

    def __init__(self) -> None:
        self.users: dict[str, str] = {}
        self.permissions: dict[tuple[str, str], Permissions] = {}

    def put_user(self, user: str, password: str) -> None:
        self.users[user] = password

    def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None:
        self.permissions[(vhost, user)] = permissions

    def delete_user(self, user: str) -> None:
        self.users.pop(user, None)


def test_an_agency_may_read_its_own_inbox_only() -> None:
    read = _account(_agency("psw:02000000")).permissions.read

    assert _matches(read, "agency.psw:02000000.inbox")
    assert not _matches(read, "agency.psw:01060063.inbox")
    assert not _matches(read, "agency.psw:02000000.inbox.dead")
    assert not _matches(read, "xbroker.ingress")


def test_the_dots_of_a_kennung_match_only_dots() -> None:
    read = _account(_agency("psw:0.2")).permissions.read

    assert _matches(read, "agency.psw:0.2.inbox")
    assert not _matches(read, "agency.psw:0x2.inbox")
    assert not _matches(read, "agencyXpsw:0.2.inbox")


def test_an_agency_with_a_test_inbox_may_read_it_too() -> None:
    read = _account(_agency("psw:02000000", endpoint=AmqpEndpoint(test=True))).permissions.read

    assert _matches(read, "agency.psw:02000000.test")


def test_an_agency_may_publish_only_delivery_receipts() -> None:
    write = _account(_agency("psw:02000000")).permissions.write

    assert _matches(write, "xbroker.delivery-receipts")
    assert not _matches(write, "xbroker.deliver")
    assert not _matches(write, "xbroker.ingress")
    assert not _matches(write, "amq.default")


def test_nobody_may_configure_anything() -> None:
    accounts = [
        _account(_agency("psw:02000000")),
        _account(_agency("osi:portal", accepts=False, may_send=("x",))),
    ]

    assert {a.permissions.configure for a in accounts} == {NOTHING}


def test_an_author_may_publish_into_ingress_and_read_its_receipts() -> None:
    portal = _account(_agency("osi:hh-portal", accepts=False, may_send=("meldung.*",)))

    assert portal.roles == ("author",)
    assert _matches(portal.permissions.write, "xbroker.ingress")
    assert _matches(portal.permissions.read, "receipts.osi:hh-portal")
    assert not _matches(portal.permissions.read, "receipts.osi:other")
    assert not _matches(portal.permissions.write, "xbroker.delivery-receipts")


def test_an_agency_that_also_authors_holds_both_roles() -> None:
    account = _account(_agency("psw:02000000", may_send=("meldung.anmeldung.bestaetigung.*",)))

    assert account.roles == ("agency", "author")
    assert _matches(account.permissions.write, "xbroker.ingress")
    assert _matches(account.permissions.write, "xbroker.delivery-receipts")


def test_an_xta_agency_that_also_authors_gets_no_amqp_user() -> None:
    endpoint = XtaEndpoint(kind="xta")

    assert account_for(_agency("bau:02000000", may_send=("bau.*",), endpoint=endpoint)) is None


def test_a_webhook_agency_gets_no_amqp_user() -> None:
    endpoint = WebhookEndpoint(kind="webhook", url="https://example.org/h", secret_env="S")

    assert account_for(_agency("gew:02000000", endpoint=endpoint)) is None


def test_an_unknown_kennung_is_refused() -> None:
    directory = Directory([_agency("psw:02000000")])

    with pytest.raises(ConfigurationError, match=r"not in the directory: psw:9"):
        accounts_for(directory, only=["psw:9"])


def test_the_vhost_and_the_url_of_an_account_are_percent_encoded() -> None:
    url = amqp_url_for(URL, "psw:02000000", "p/w")

    assert url == "amqp://psw%3A02000000:p%2Fw@127.0.0.1:5672/xbroker-test"
    assert vhost_of(url) == "xbroker-test"
    assert vhost_of("amqp://guest:guest@127.0.0.1:5672/") == "/"


def test_passwords_are_written_to_a_file_only_the_owner_can_read(tmp_path: Path) -> None:
    file = tmp_path / "state" / "amqp-credentials.json"
    backend = RecordingBackend()

    provision([_account(_agency("psw:02000000"))], backend, amqp_url=URL, credentials=file)

    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    stored = read_credentials(file)["psw:02000000"]
    assert backend.users == {"psw:02000000": stored["password"]}
    assert len(stored["password"]) >= 40


def test_provisioning_again_keeps_passwords_unless_rotated(tmp_path: Path) -> None:
    file = tmp_path / "amqp-credentials.json"
    accounts = [_account(_agency("psw:02000000"))]
    first = provision(accounts, RecordingBackend(), amqp_url=URL, credentials=file)
    again = provision(accounts, RecordingBackend(), amqp_url=URL, credentials=file)
    rotated = provision(accounts, RecordingBackend(), amqp_url=URL, credentials=file, rotate=True)

    assert first[0].amqp_url == again[0].amqp_url
    assert (first[0].new_password, again[0].new_password) == (True, False)
    assert rotated[0].amqp_url != first[0].amqp_url


def test_permissions_are_set_on_the_vhost_of_the_amqp_url(tmp_path: Path) -> None:
    backend = RecordingBackend()
    account = _account(_agency("psw:02000000"))

    provision([account], backend, amqp_url=URL, credentials=tmp_path / "c.json")

    assert backend.permissions == {("xbroker-test", "psw:02000000"): account.permissions}


def test_the_summary_shows_no_password(tmp_path: Path) -> None:
    (done,) = provision(
        [_account(_agency("psw:02000000"))],
        RecordingBackend(),
        amqp_url=URL,
        credentials=tmp_path / "c.json",
    )
    password = read_credentials(tmp_path / "c.json")["psw:02000000"]["password"]

    assert password not in repr(done.summary())


def test_a_remote_node_without_a_management_url_is_refused_with_the_remedy(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigurationError, match="--management-url"):
        backend_for("amqp://guest:guest@rabbit.example:5672/", None, root=tmp_path)


def test_a_management_url_selects_the_http_api() -> None:
    backend = backend_for(URL, "http://admin:secret@rabbit.example:15672")

    assert isinstance(backend, ManagementApiBackend)


def test_generated_passwords_are_letters_and_digits_only() -> None:
    # rabbitmqctl reads an argument starting with "-" as an option; URLs need no escaping.
    passwords = {generate_password() for _ in range(2000)}

    assert len(passwords) == 2000
    assert all(p.isascii() and p.isalnum() and len(p) == 43 for p in passwords)
