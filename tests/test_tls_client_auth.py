"""Parties log in to the real node with TLS client certificates (EXTERNAL), not passwords.

A deployment's agency CA is made for this module and added to the node's trusted client
CAs while the node runs (removed afterwards). Agencies A and B and the portal get
certificate users from `broker.ops.tenancy.tls.provision_tls`, named per run like their
certificates' CN, because users belong to the node, not to the session's vhost.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import aio_pika
import aiormq
import pytest
from prometheus_client import CollectorRegistry

from broker import devnode
from broker.amqp import topology
from broker.app import build_broker, load_parts, party_signer
from broker.cli import main
from broker.commands.demo import ensure_dev_pki
from broker.ops.tenancy.accounts import accounts_for, read_credentials
from broker.ops.tenancy.backends import RabbitmqctlBackend
from broker.ops.tenancy.tls import provision_tls
from broker.sdk.agency import IN_MEMORY, Delivery
from broker.sdk.portal import Portal
from broker.settings import load_settings
from monitoring.labels import ReceiptKind
from signing import parse_untrusted
from signing.devpki import create_ca, issue_tls_certificate
from tests.world import agency_client
from xta_schemas import Catalog
from xta_schemas.samples import with_fresh_header

if TYPE_CHECKING:  # not importable at run time: a subfolder's conftest can shadow it
    from conftest import RabbitMQ

pytestmark = pytest.mark.rabbitmq

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
A, B, PORTAL = "psw:02000000", "psw:01060063", "osi:hh-portal"
TIMEOUT = 30.0
AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
CONNECTION_START = b"\x01\x00\x00"  # a method frame on channel 0


@dataclass
class Tenants:
    node: devnode.NodeInfo
    vhost: str
    prefix: str
    urls: dict[str, str]  # kennung → amqps URL with that party's certificate
    agency_ca: Path  # the trusted deployment CA (ca.crt, ca.key)
    work: Path
    portal: Portal
    received: list[Delivery]


def _tls_node(local_node: devnode.NodeInfo, root: Path) -> devnode.NodeInfo:
    if local_node.tls_port is not None:
        return local_node
    return devnode.ensure_node(root)  # a node older than its TLS listener restarts once


@pytest.fixture(scope="module")
def agency_ca(
    local_node: devnode.NodeInfo,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Path]:
    """A deployment's agency CA, trusted by the running node for this module only."""
    _tls_node(local_node, request.config.rootpath)
    ca_dir = tmp_path_factory.mktemp("agency-ca") / "ca"
    create_ca(ca_dir, f"test agency CA {ca_dir.parent.name}")
    name = f"test-{secrets.token_hex(4)}"
    devnode.trust_client_ca(name, (ca_dir / "ca.crt").read_bytes(), root=request.config.rootpath)
    yield ca_dir
    devnode.distrust_client_ca(name, root=request.config.rootpath)


@pytest.fixture(scope="module")
async def tenants(
    rabbitmq: RabbitMQ,
    local_node: devnode.NodeInfo,
    agency_ca: Path,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Tenants]:
    root = request.config.rootpath
    node = _tls_node(local_node, root)
    work = tmp_path_factory.mktemp("tls")
    settings = load_settings(
        EXAMPLES / "xbroker.toml", amqp_url=rabbitmq.amqp_url, state_dir=work, metrics_port=0
    )
    ensure_dev_pki(settings)
    parts = load_parts(settings)
    prefix = f"t{secrets.token_hex(3)}-"
    accounts = accounts_for(parts.directory, only=[A, B, PORTAL], user_prefix=prefix)
    backend = RabbitmqctlBackend(root)

    def issue(common_name: str, cert: Path, key: Path) -> None:
        issue_tls_certificate(agency_ca, common_name, cert, key, purpose="client")

    credentials = work / "amqp-credentials.json"
    received: list[Delivery] = []

    async def record(delivery: Delivery) -> None:
        received.append(delivery)

    broker = build_broker(parts, CollectorRegistry())
    await broker.start()
    try:
        provision_tls(
            accounts,
            backend,
            amqps_base=node.tls_url_for_vhost(rabbitmq.vhost),
            server_ca=node.tls_ca_file,
            cert_dir=work / "clients",
            credentials=credentials,
            issue=issue,
        )
        urls = {k: v["amqp_url"] for k, v in read_credentials(credentials).items()}
        agency = agency_client(urls[A], settings, parts, A, record, IN_MEMORY)
        portal = Portal(urls[PORTAL], PORTAL, party_signer(settings, PORTAL), parts.verifier())
        await agency.start()
        await portal.start()
        try:
            yield Tenants(node, rabbitmq.vhost, prefix, urls, agency_ca, work, portal, received)
        finally:
            await portal.close()
            await agency.close()
    finally:
        await broker.stop()
        for account in accounts:
            with contextlib.suppress(devnode.RabbitmqctlError):  # absent if provision failed
                backend.delete_user(account.user)


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    """A consumer that is never called: the consume itself is refused."""


def _first_amqp_bytes(node: devnode.NodeInfo, cert: Path, key: Path) -> bytes:
    """Handshake with ``cert`` as aiormq does, send the AMQP header, read the answer."""
    context = ssl.create_default_context(cafile=node.tls_ca_file)
    context.load_cert_chain(cert, key)
    assert node.tls_port is not None
    with (
        socket.create_connection(("127.0.0.1", node.tls_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(AMQP_HEADER)
        return tls.recv(3)


def _client_certificate(tenants: Tenants, ca_dir: Path, common_name: str) -> tuple[Path, Path]:
    stem = tenants.work / "extra" / secrets.token_hex(4)
    cert, key = stem.with_suffix(".crt"), stem.with_suffix(".key")
    issue_tls_certificate(ca_dir, common_name, cert, key, purpose="client")
    return cert, key


async def test_an_agency_logged_in_by_certificate_receives_and_confirms_end_to_end(
    tenants: Tenants,
) -> None:
    root = parse_untrusted((EXAMPLES / "submissions" / "anmeldung-hamburg.xml").read_bytes())
    standard, _ = Catalog.load(()).identify(root)
    uuid = await tenants.portal.submit(with_fresh_header(root, standard))

    state = await tenants.portal.wait_final(uuid, TIMEOUT)

    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert {r.issuer for r in state.receipts if r.kind is ReceiptKind.DELIVERED} == {A}
    assert [d.uuid for d in tenants.received] == [uuid]


def test_a_certificate_of_the_trusted_agency_ca_passes_the_handshake(tenants: Tenants) -> None:
    cert, key = _client_certificate(tenants, tenants.agency_ca, f"{tenants.prefix}{A}")

    assert _first_amqp_bytes(tenants.node, cert, key) == CONNECTION_START


def test_a_certificate_from_an_untrusted_ca_is_refused_in_the_handshake(
    tenants: Tenants,
) -> None:
    stranger = tenants.work / "stranger-ca"
    create_ca(stranger, "a CA the node does not trust")
    cert, key = _client_certificate(tenants, stranger, f"{tenants.prefix}{A}")

    # TLS 1.3: the client finishes first; the server's alert arrives on the first read.
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _first_amqp_bytes(tenants.node, cert, key)


async def test_a_certificate_whose_cn_is_no_user_cannot_log_in(tenants: Tenants) -> None:
    cert, key = _client_certificate(tenants, tenants.agency_ca, f"{tenants.prefix}nobody")
    url = tenants.node.amqps_url_for_vhost(tenants.vhost, cert, key)

    with pytest.raises(aiormq.exceptions.AMQPConnectionError):
        await aio_pika.connect(url, timeout=10)


async def test_agency_a_certificate_gets_access_refused_on_agency_b_inbox(
    tenants: Tenants,
) -> None:
    connection = await aio_pika.connect(tenants.urls[A], timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(topology.agency_queue(B))  # passive: allowed

        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await queue.consume(_ignore)


async def test_agency_a_certificate_cannot_publish_into_the_delivery_exchange(
    tenants: Tenants,
) -> None:
    connection = await aio_pika.connect(tenants.urls[A], timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(topology.DELIVER_EXCHANGE, ensure=False)

        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            await exchange.publish(
                aio_pika.Message(b"<forged/>"), topology.agency_routing_key(B), timeout=10
            )


def test_the_credentials_name_the_certificate_key_and_node_ca(tenants: Tenants) -> None:
    query = parse_qs(urlsplit(tenants.urls[A]).query)

    assert query["auth"] == ["external"]
    assert query["cafile"] == [str(tenants.node.tls_ca_file)]
    assert Path(query["certfile"][0]).is_file() and Path(query["keyfile"][0]).is_file()


async def test_provision_tls_on_the_local_node_hands_out_a_working_certificate_url(
    rabbitmq: RabbitMQ,
    local_node: devnode.NodeInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    pytestconfig: pytest.Config,
) -> None:
    _tls_node(local_node, pytestconfig.rootpath)
    monkeypatch.setenv("XBROKER_AMQP_URL", rabbitmq.amqp_url)
    monkeypatch.setenv("XBROKER_STATE_DIR", str(tmp_path))
    prefix = f"c{secrets.token_hex(3)}-"
    config = str(EXAMPLES / "xbroker.toml")
    ensure_dev_pki(load_settings(config))  # the directory names the parties' certificates
    try:
        code = main(["--config", config, "agencies", "provision", "--tls", "--only", A,
                     "--user-prefix", prefix, "--json"])  # fmt: skip
        assert code == 0, capsys.readouterr().err
        url = read_credentials(tmp_path / "amqp-credentials.json")[A]["amqp_url"]

        connection = await aio_pika.connect(url, timeout=10)
        async with connection:
            channel = await connection.channel()
            await channel.get_queue(topology.agency_queue(A))  # its own inbox exists
    finally:
        with contextlib.suppress(devnode.RabbitmqctlError):  # absent if provisioning failed
            devnode.rabbitmqctl("delete_user", f"{prefix}{A}", root=pytestconfig.rootpath)
