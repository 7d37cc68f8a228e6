"""The project-local RabbitMQ node: reused while it answers, loopback only, clear when absent."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import aio_pika
import aiormq
import pytest

from broker import devnode
from tests.polling import eventually

if TYPE_CHECKING:  # not importable at run time: a subfolder's conftest can shadow it
    from conftest import RabbitMQ

LISTEN = "0A"  # TCP state code in /proc/net/tcp


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening socket on ``port``, from /proc/net/tcp{,6}."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == LISTEN and int(hex_port, 16) == port:
                found.add(address)
    return found


@pytest.fixture(scope="module")
def scratch_root(tmp_path_factory: pytest.TempPathFactory, local_node: object) -> Iterator[Path]:
    """A second checkout of its own, so its node can be started, killed and stopped."""
    root = tmp_path_factory.mktemp("checkout")
    yield root
    devnode.stop_node(root)


def test_ensuring_a_running_node_reuses_it(
    local_node: devnode.NodeInfo, pytestconfig: pytest.Config
) -> None:
    again = devnode.ensure_node(pytestconfig.rootpath)

    assert again == local_node  # the same process (pid) on the same ports


def test_node_listens_on_loopback_only(local_node: devnode.NodeInfo) -> None:
    loopback = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
    for port in (local_node.amqp_port, local_node.dist_port, local_node.prometheus_port):
        assert _listening_addresses(port) == {loopback}, port


def test_node_serves_prometheus_metrics(local_node: devnode.NodeInfo) -> None:
    url = f"http://127.0.0.1:{local_node.prometheus_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert b"rabbitmq_" in response.read()


def test_print_url_writes_only_the_url_to_stdout(
    local_node: devnode.NodeInfo, pytestconfig: pytest.Config
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "XBROKER_AMQP_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "broker.commands.devnode", "ensure", "--print-url"],
        capture_output=True,
        text=True,
        env=env,
        cwd=pytestconfig.rootpath,
        check=True,
    )
    assert done.stdout == local_node.amqp_url + "\n"


def test_print_url_prefers_a_reachable_xbroker_amqp_url(rabbitmq: RabbitMQ) -> None:
    env = {**os.environ, "XBROKER_AMQP_URL": rabbitmq.amqp_url}
    done = subprocess.run(
        [sys.executable, "-m", "broker.commands.devnode", "ensure", "--print-url"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert done.stdout == rabbitmq.amqp_url + "\n"


def test_two_checkouts_get_two_node_names(tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    assert devnode.nodename_for(first) != devnode.nodename_for(second)
    assert devnode.nodename_for(first) == devnode.nodename_for(first)


def test_missing_rabbitmq_server_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XBROKER_RABBITMQ_BIN", str(tmp_path / "absent"))
    with pytest.raises(devnode.RabbitMQNotInstalledError, match="apt-get install rabbitmq-server"):
        devnode.ensure_node(tmp_path)


def test_ensure_starts_a_node_where_none_runs(scratch_root: Path) -> None:
    info = devnode.ensure_node(scratch_root)
    assert devnode.node_status(scratch_root) == info
    assert info.base == scratch_root.resolve() / ".xbroker" / "rabbitmq"


async def test_a_dead_node_is_restarted_on_its_remembered_ports(scratch_root: Path) -> None:
    before = devnode.ensure_node(scratch_root)
    os.kill(before.pid, signal.SIGKILL)
    await eventually(lambda: not Path(f"/proc/{before.pid}").exists(), what="the killed node gone")
    after = devnode.ensure_node(scratch_root)
    assert after.pid != before.pid
    assert (after.amqp_port, after.dist_port, after.prometheus_port) == (
        before.amqp_port,
        before.dist_port,
        before.prometheus_port,
    )


def test_stop_node_stops_the_node(scratch_root: Path) -> None:
    info = devnode.ensure_node(scratch_root)
    assert devnode.stop_node(scratch_root) is True
    assert devnode.node_status(scratch_root) is None
    assert not Path(f"/proc/{info.pid}").exists()


@pytest.fixture
def tenant(rabbitmq: RabbitMQ, pytestconfig: pytest.Config) -> Iterator[tuple[str, str]]:
    """A user with the monitoring tag, granted ``^tenant\\.`` in the session vhost only."""
    root = pytestconfig.rootpath
    user, password = f"tenant-{secrets.token_hex(3)}", secrets.token_hex(8)
    devnode.add_user(user, password, ["monitoring"], root=root)
    try:
        devnode.set_permissions(
            rabbitmq.vhost, user, "^tenant\\.", "^tenant\\.", "^tenant\\.", root=root
        )
        yield user, password
    finally:
        devnode.rabbitmqctl("delete_user", user, root=root)


def test_add_user_records_the_tags(tenant: tuple[str, str], pytestconfig: pytest.Config) -> None:
    users = devnode.rabbitmqctl("list_users", root=pytestconfig.rootpath).splitlines()
    assert f"{tenant[0]}\t[monitoring]" in users


async def test_a_user_may_open_the_vhost_it_was_granted(
    tenant: tuple[str, str], rabbitmq: RabbitMQ, local_node: devnode.NodeInfo
) -> None:
    user, password = tenant
    url = f"amqp://{user}:{password}@127.0.0.1:{local_node.amqp_port}/{rabbitmq.vhost}"
    async with await aio_pika.connect(url, timeout=10) as connection:
        assert not connection.is_closed


async def test_a_user_may_not_open_a_vhost_it_was_not_granted(
    tenant: tuple[str, str], local_node: devnode.NodeInfo
) -> None:
    user, password = tenant
    with pytest.raises(aiormq.exceptions.AMQPError):
        await aio_pika.connect(
            f"amqp://{user}:{password}@127.0.0.1:{local_node.amqp_port}/", timeout=10
        )
