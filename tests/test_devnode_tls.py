"""The local node's TLS listener: loopback only, password or certificate, trust changed live."""

from __future__ import annotations

import json
import secrets
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import aio_pika
import pytest

from broker import devnode
from broker.devnode.layout import _choose_ports, _Layout
from signing.devpki import create_ca, issue_tls_certificate

if TYPE_CHECKING:  # not importable at run time: a subfolder's conftest can shadow it
    from conftest import RabbitMQ

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
CONNECTION_START = b"\x01\x00\x00"  # a method frame on channel 0
LOOPBACK = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
LISTEN = "0A"


@pytest.fixture(scope="session")
def tls_node(local_node: devnode.NodeInfo, pytestconfig: pytest.Config) -> devnode.NodeInfo:
    if local_node.tls_port is not None:
        return local_node
    return devnode.ensure_node(pytestconfig.rootpath)  # older than its TLS listener: restart


def _handshake(
    node: devnode.NodeInfo, host: str, cert: tuple[Path, Path] | None = None, reply: int = 3
) -> bytes:
    """A TLS handshake verifying the node as aiormq does; the first bytes AMQP answers."""
    context = ssl.create_default_context(cafile=node.tls_ca_file)
    if cert is not None:
        context.load_cert_chain(*cert)
    assert node.tls_port is not None
    with (
        socket.create_connection(("127.0.0.1", node.tls_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(AMQP_HEADER)
        return tls.recv(reply)


def test_tls_listener_is_on_loopback_only(tls_node: devnode.NodeInfo) -> None:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port = local.split(":")
            if state == LISTEN and int(port, 16) == tls_node.tls_port:
                found.add(address)
    assert found == {LOOPBACK}


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_server_certificate_verifies_for_the_loopback_names(
    tls_node: devnode.NodeInfo, host: str
) -> None:
    assert _handshake(tls_node, host) == CONNECTION_START


def test_the_node_offers_certificate_and_password_logins(tls_node: devnode.NodeInfo) -> None:
    start = _handshake(tls_node, "127.0.0.1", reply=4096)

    assert b"EXTERNAL" in start and b"PLAIN" in start


async def test_a_password_login_over_tls_needs_no_client_certificate(
    tls_node: devnode.NodeInfo, rabbitmq: RabbitMQ
) -> None:
    url = tls_node.tls_url_for_vhost(rabbitmq.vhost).replace(
        "amqps://", f"amqps://{tls_node.user}:{tls_node.password}@"
    )
    async with await aio_pika.connect(f"{url}?cafile={tls_node.tls_ca_file}", timeout=10) as c:
        assert not c.is_closed


@pytest.fixture
def deployment_ca(tmp_path: Path, pytestconfig: pytest.Config) -> Iterator[tuple[str, Path]]:
    """A CA the node does not trust yet, and its name in the node's trust folder."""
    name = f"test-{secrets.token_hex(4)}"
    create_ca(tmp_path / "ca", f"deployment CA {name}")
    yield name, tmp_path / "ca"
    devnode.distrust_client_ca(name, root=pytestconfig.rootpath)


def _client_cert(ca_dir: Path) -> tuple[Path, Path]:
    cert, key = ca_dir.parent / "client.crt", ca_dir.parent / "client.key"
    issue_tls_certificate(ca_dir, "someone", cert, key, purpose="client")
    return cert, key


def test_a_client_ca_trusted_while_the_node_runs_is_accepted_at_the_next_handshake(
    tls_node: devnode.NodeInfo, deployment_ca: tuple[str, Path], pytestconfig: pytest.Config
) -> None:
    name, ca_dir = deployment_ca
    cert = _client_cert(ca_dir)

    devnode.trust_client_ca(name, (ca_dir / "ca.crt").read_bytes(), root=pytestconfig.rootpath)

    assert _handshake(tls_node, "127.0.0.1", cert) == CONNECTION_START


def test_a_distrusted_client_ca_is_refused_at_the_next_handshake(
    tls_node: devnode.NodeInfo, deployment_ca: tuple[str, Path], pytestconfig: pytest.Config
) -> None:
    name, ca_dir = deployment_ca
    cert = _client_cert(ca_dir)
    devnode.trust_client_ca(name, (ca_dir / "ca.crt").read_bytes(), root=pytestconfig.rootpath)
    assert _handshake(tls_node, "127.0.0.1", cert) == CONNECTION_START

    devnode.distrust_client_ca(name, root=pytestconfig.rootpath)

    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        _handshake(tls_node, "127.0.0.1", cert)


def test_a_node_json_without_a_tls_port_keeps_its_ports_and_gets_one(tmp_path: Path) -> None:
    layout = _Layout.of(tmp_path)
    layout.base.mkdir(parents=True)
    old = {"amqp_port": 0, "dist_port": 0, "prometheus_port": 0}
    for key in old:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            old[key] = probe.getsockname()[1]
    layout.state_file.write_text(json.dumps({"nodename": layout.nodename, **old}))

    ports = _choose_ports(layout)

    assert (ports.amqp, ports.dist, ports.prometheus) == tuple(old.values())
    assert ports.tls not in {0, *old.values()}
    assert json.loads(layout.state_file.read_text())["tls_port"] == ports.tls


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory: pytest.TempPathFactory, tls_node: object) -> Iterator[Path]:
    """A second checkout of its own, so its node can be restarted and stopped."""
    root = tmp_path_factory.mktemp("checkout")
    yield root
    devnode.stop_node(root)


def test_a_node_started_before_its_tls_listener_is_restarted_once(scratch_root: Path) -> None:
    before = devnode.ensure_node(scratch_root)
    layout = _Layout.of(scratch_root)
    state = json.loads(layout.state_file.read_text())
    del state["tls_port"]
    layout.state_file.write_text(json.dumps(state))
    (layout.base / "rabbitmq.conf").write_text(f"listeners.tcp.default = {before.amqp_port}\n")

    after = devnode.ensure_node(scratch_root)
    again = devnode.ensure_node(scratch_root)

    assert after.pid != before.pid and again.pid == after.pid
    assert after.amqp_port == before.amqp_port and after.tls_port is not None
    assert _handshake(after, "127.0.0.1") == CONNECTION_START
