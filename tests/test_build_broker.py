"""A broker built without records of its own opens them, and its stop closes them."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from broker.app import build_broker, load_parts
from broker.commands.demo import ensure_dev_pki
from broker.settings import Settings
from broker.stores.journal import EventKind, StatusEvent
from tests.postgres_fixtures import Backend

pytestmark = pytest.mark.rabbitmq


def _files_open_under(folder: Path) -> list[str]:
    """The files under ``folder`` this process holds open."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if target.startswith(f"{folder.resolve()}/"):
            held.append(target)
    return held


async def _sessions_of(settings: Settings) -> int:
    """The server sessions of this broker (its pool and its presence)."""
    if settings.database_url is None:
        return 0
    conn = await asyncpg.connect(settings.database_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
            f"xbroker {settings.broker_name}%",
        )
    finally:
        await conn.close()
    return int(count)


async def test_the_stop_closes_the_stores_build_broker_opened(
    backend: Backend, amqp_url: str
) -> None:
    settings = backend.settings.model_copy(
        update={
            "amqp_url": amqp_url,
            "metrics_port": 0,
            "broker_name": f"closing-{secrets.token_hex(4)}",
        }
    )
    ensure_dev_pki(settings)
    broker = build_broker(load_parts(settings), CollectorRegistry())
    await broker.start()
    try:
        await broker.journal.record(StatusEvent("u1", EventKind.RECEIVED, author="osi:hh-portal"))
        # What the checks below must see while the stores are open.
        assert _files_open_under(settings.state_dir)
        if backend.name == "postgres":
            assert await _sessions_of(settings) > 0
    finally:
        await broker.stop()

    assert await _sessions_of(settings) == 0
    assert _files_open_under(settings.state_dir) == []


async def test_a_broker_stopped_without_being_started_closes_its_stores(
    backend: Backend,
) -> None:
    settings = backend.settings.model_copy(
        update={"broker_name": f"closing-{secrets.token_hex(4)}"}
    )
    ensure_dev_pki(settings)
    broker = build_broker(load_parts(settings), CollectorRegistry())
    await broker.journal.record(StatusEvent("u1", EventKind.RECEIVED, author="osi:hh-portal"))

    await broker.stop()

    assert await _sessions_of(settings) == 0
    assert _files_open_under(settings.state_dir) == []
