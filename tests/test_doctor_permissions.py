"""`xbroker doctor` compares the RabbitMQ permissions of each provisioned party with what
the directory implies, on the real node."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from broker.app import load_parts
from broker.commands.demo import ensure_dev_pki
from broker.ops.doctor.checks import Status
from broker.ops.doctor.permissions import check_permissions
from broker.ops.tenancy.accounts import (
    accounts_for,
    credentials_path,
    provision,
    read_credentials,
    vhost_of,
)
from broker.ops.tenancy.backends import RabbitmqctlBackend
from broker.settings import Settings, load_settings
from routing import Directory
from tests.world import EXAMPLES

pytestmark = pytest.mark.rabbitmq

A = "psw:02000000"


@pytest.fixture
def world(amqp_url: str, tmp_path: Path) -> tuple[Settings, Directory]:
    settings = load_settings(EXAMPLES / "xbroker.toml", amqp_url=amqp_url, state_dir=tmp_path)
    ensure_dev_pki(settings)
    return settings, load_parts(settings).directory


@pytest.fixture
def provisioned(
    world: tuple[Settings, Directory], request: pytest.FixtureRequest
) -> Iterator[RabbitmqctlBackend]:
    settings, directory = world
    backend = RabbitmqctlBackend(request.config.rootpath)
    accounts = accounts_for(directory, user_prefix=f"d{secrets.token_hex(3)}-")
    provision(
        accounts,
        backend,
        amqp_url=settings.amqp_url,
        credentials=credentials_path(settings.state_dir),
    )
    yield backend
    for account in accounts:
        backend.delete_user(account.user)


async def test_no_provisioned_users_is_reported_not_failed(
    world: tuple[Settings, Directory],
) -> None:
    (finding,) = await check_permissions(*world)

    assert finding.status is Status.SKIP
    assert "agencies provision" in finding.fix


async def test_provisioned_users_match_the_directory(
    world: tuple[Settings, Directory], provisioned: RabbitmqctlBackend
) -> None:
    findings = await check_permissions(*world)

    assert {f.status for f in findings} == {Status.OK}
    assert len(findings) == len(accounts_for(world[1]))


async def test_a_widened_permission_is_named_with_its_fix(
    world: tuple[Settings, Directory],
    provisioned: RabbitmqctlBackend,
    rabbitmqctl: Callable[..., str],
) -> None:
    settings, directory = world
    user_a = read_credentials(credentials_path(settings.state_dir))[A]["user"]
    rabbitmqctl("set_permissions", "-p", vhost_of(settings.amqp_url), user_a, "", "", ".*")

    findings = await check_permissions(settings, directory)

    failed = [f for f in findings if f.status is Status.FAIL]
    assert len(failed) == 1
    assert A in failed[0].detail
    assert f"--only {A}" in failed[0].fix
