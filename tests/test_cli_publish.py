"""`xbroker publish DIR`: a bulk run signs, publishes, shows its progress and reports every
message's receipts as JSON, against the running example world."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from lxml import etree

from tests.world import EXAMPLES, SUBMISSIONS, World, running_world

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
async def world(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(amqp_url, tmp_path_factory.mktemp("publish")) as running:
        yield running


async def test_bulk_publish_reports_every_message_as_json(
    world: World, amqp_url: str, tmp_path: Path
) -> None:
    await world.portal.close()  # the CLI is the portal now: one consumer of its receipts
    folder = tmp_path / "outbox"
    folder.mkdir()
    for sample in sorted(SUBMISSIONS.glob("*.xml")):
        fresh = world.fresh(sample.name)
        (folder / sample.name).write_bytes(etree.tostring(fresh, xml_declaration=True))
    config = tmp_path / "xbroker.toml"
    config.write_text(
        f'state_dir = "{world.settings.state_dir}"\ndirectory = "{EXAMPLES / "directory.toml"}"\n',
        encoding="utf-8",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broker.cli",
        "--config",
        str(config),
        "publish",
        str(folder),
        "--json",
        "--progress",
        env=dict(os.environ, XBROKER_AMQP_URL=amqp_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)

    report = json.loads(stdout)
    by_file = {Path(m["file"]).name: m for m in report["messages"]}
    assert process.returncode == 1, "one submission is invalid"
    assert report["ok"] is False
    assert all(m["final"] for m in report["messages"])
    kinds = [r["kind"] for r in by_file["anmeldung-hamburg.xml"]["receipts"]]
    assert kinds == ["accepted", "delivered"]
    (rejected,) = by_file["invalid-anmeldung-missing-birthdate.xml"]["receipts"]
    assert (rejected["kind"], rejected["reason"]) == ("rejected", "schema-invalid")
    assert b"4/4" in stderr and b"100%" in stderr, stderr.decode()
