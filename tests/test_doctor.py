"""Specification of ``xbroker doctor``: a good setup passes, a broken one says how to fix it.

The RabbitMQ checks run against the real node: the test session's vhost with the
topology declared (a good setup), a fresh vhost without it, and a port nobody listens on.
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import aio_pika
import pytest

from broker import devnode
from broker.amqp import topology
from broker.cli import main
from broker.commands.demo import ensure_dev_pki
from broker.ops.doctor.checks import Report, Status, diagnose
from broker.settings import Settings, load_settings
from routing import Directory
from tests.conftest import RabbitMQ

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def settings_file(tmp: Path, amqp_url: str, state_dir: Path) -> Path:
    path = tmp / "xbroker.toml"
    path.write_text(
        f'amqp_url = "{amqp_url}"\n'
        f'state_dir = "{state_dir}"\n'
        f'directory = "{EXAMPLES / "directory.toml"}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = tmp_path_factory.mktemp("doctor-state")
    ensure_dev_pki(load_settings(None, state_dir=state, directory=EXAMPLES / "directory.toml"))
    return state


@pytest.fixture
async def declared(amqp_url: str, state_dir: Path) -> AsyncIterator[Settings]:
    """Settings of the session's vhost with the whole topology declared."""
    settings = load_settings(
        None, amqp_url=amqp_url, state_dir=state_dir, directory=EXAMPLES / "directory.toml"
    )
    directory = Directory.load(settings.directory, settings.party_certificate_dir)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        exchanges = await topology.declare_core(channel, settings.delivery_limit)
        await topology.declare_for_directory(channel, exchanges, directory, settings.delivery_limit)
    yield settings


@pytest.fixture
def empty_vhost(
    rabbitmq: RabbitMQ, local_node: devnode.NodeInfo, request: pytest.FixtureRequest
) -> Iterator[str]:
    vhost = f"xbroker-doctor-{secrets.token_hex(4)}"
    root = request.config.rootpath
    devnode.add_vhost(vhost, root=root)
    devnode.set_permissions(vhost, rabbitmq.user, ".*", ".*", ".*", root=root)
    yield local_node.url_for_vhost(vhost)
    devnode.delete_vhost(vhost, root=root)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


def failed(report: Report, check: str) -> list[str]:
    return [
        f.detail + " | " + f.fix
        for f in report.findings
        if f.check == check and f.status is Status.FAIL
    ]


async def test_a_good_setup_has_no_problem(declared: Settings) -> None:
    report = await diagnose(declared)
    assert report.ok, [f for f in report.findings if f.status is Status.FAIL]
    checks = {f.check for f in report.findings if f.status is Status.OK}
    assert {"standards", "directory", "trust", "certificates", "rabbitmq", "topology"} <= checks


async def test_the_rabbitmq_finding_names_product_and_version(declared: Settings) -> None:
    report = await diagnose(declared)
    (rabbit,) = [f for f in report.findings if f.check == "rabbitmq"]
    assert "RabbitMQ 3." in rabbit.detail


async def test_the_amqp_password_never_appears_in_the_report(declared: Settings) -> None:
    password = declared.amqp_url.split("@")[0].rsplit(":", 1)[1]
    report = await diagnose(declared)
    assert f":{password}@" not in json.dumps(report.as_json())


async def test_an_unreachable_node_fails_with_how_to_start_it(state_dir: Path) -> None:
    settings = load_settings(
        None, amqp_url=closed_port_url(), state_dir=state_dir, directory=EXAMPLES / "directory.toml"
    )
    report = await diagnose(settings, timeout=2.0)
    assert not report.ok
    (problem,) = failed(report, "rabbitmq")
    assert "cannot be reached" in problem and "start RabbitMQ" in problem
    skipped = {f.check for f in report.findings if f.status is Status.SKIP}
    assert {"topology", "permissions"} <= skipped


async def test_a_vhost_without_the_topology_fails_naming_what_is_missing(
    empty_vhost: str, state_dir: Path
) -> None:
    settings = load_settings(
        None, amqp_url=empty_vhost, state_dir=state_dir, directory=EXAMPLES / "directory.toml"
    )
    report = await diagnose(settings)
    (problem,) = failed(report, "topology")
    assert f"exchange {topology.INGRESS_EXCHANGE}" in problem
    assert "queue agency.psw:02000000.inbox" in problem
    assert "xbroker run" in problem


async def test_a_missing_trust_store_fails_with_how_to_make_one(
    declared: Settings, tmp_path: Path
) -> None:
    pki = tmp_path / "pki"
    shutil.copytree(declared.pki, pki)
    shutil.rmtree(pki / "trust")
    report = await diagnose(declared.model_copy(update={"pki_dir": pki}))
    assert not report.ok
    (problem,) = failed(report, "trust")
    assert "no trust store" in problem and "xbroker pki init" in problem


async def test_a_certificate_within_21_days_of_expiry_warns_without_failing(
    declared: Settings,
) -> None:
    directory = Directory.load(declared.directory, declared.party_certificate_dir)
    agency = directory.get("psw:02000000")
    assert agency is not None and agency.certificates[0].not_after is not None
    soon = agency.certificates[0].not_after - timedelta(days=10)
    report = await diagnose(declared, now=soon)
    warned = [f for f in report.findings if f.status is Status.WARN]
    assert any("psw:02000000" in f.detail and "expires in" in f.detail for f in warned)
    assert all(f.fix for f in warned)
    # Ten days before the certificate expires, the CRL made today is long out of date,
    # and the sealing check validates encryption keys against it as the worker would.
    failed = [f for f in report.findings if f.status is Status.FAIL]
    assert failed and all(
        f.check == "sealing" and "CRL is out of date" in f.detail for f in failed
    ), failed


async def test_an_expired_certificate_fails(declared: Settings) -> None:
    directory = Directory.load(declared.directory, declared.party_certificate_dir)
    agency = directory.get("psw:02000000")
    assert agency is not None and agency.certificates[0].not_after is not None
    later = agency.certificates[0].not_after + timedelta(days=1)
    report = await diagnose(declared, now=later)
    assert any("psw:02000000" in p and "expired" in p for p in failed(report, "certificates"))


def test_cli_exits_0_and_prints_json_for_a_good_setup(
    declared: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = settings_file(tmp_path, declared.amqp_url, declared.state_dir)
    assert main(["--config", str(config), "doctor", "--json"]) == 0
    output = json.loads(capsys.readouterr().out)
    assert output["ok"] is True
    assert {f["check"] for f in output["findings"]} >= {"rabbitmq", "topology", "trust"}


def test_cli_exits_1_and_prints_the_fix_when_the_node_is_unreachable(
    state_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = settings_file(tmp_path, closed_port_url(), state_dir)
    assert main(["--config", str(config), "doctor", "--timeout", "2"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  rabbitmq" in out
    assert "fix: start RabbitMQ" in out


def test_cli_reports_an_unreadable_settings_file_as_a_failed_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("amqp_url = ", encoding="utf-8")
    assert main(["--config", str(config), "doctor"]) == 1
    assert "FAIL  settings" in capsys.readouterr().out
