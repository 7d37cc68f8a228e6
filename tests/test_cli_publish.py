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

from broker.app import party_signer
from tests.world import EXAMPLES, SUBMISSIONS, World, running_world

pytestmark = pytest.mark.rabbitmq


@pytest.fixture(scope="module")
async def world(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(amqp_url, tmp_path_factory.mktemp("publish")) as running:
        yield running


async def _publish(
    world: World, amqp_url: str, tmp_path: Path, *args: str
) -> tuple[int | None, bytes, bytes]:
    """Run ``xbroker publish ARGS`` against the world; its exit code, stdout, stderr."""
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
        *args,
        env=dict(os.environ, XBROKER_AMQP_URL=amqp_url),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    return process.returncode, stdout, stderr


async def test_signed_files_without_as_wait_for_their_signers_receipts(
    world: World, amqp_url: str, tmp_path: Path
) -> None:
    # An agency's confirmation, signed by it: its receipts go to the agency's queue, not
    # the portal's, so that is where publish must wait when --as does not say.
    agency = "psw:02000000"
    fresh = world.fresh_standard_sample("xmeld/1.1", "meldung.anmeldung.bestaetigung.0201")
    signed = tmp_path / "bestaetigung.xml"
    signed.write_bytes(party_signer(world.settings, agency).sign(fresh))

    returncode, stdout, stderr = await _publish(
        world, amqp_url, tmp_path, str(signed), "--signed", "--json", "--timeout", "60"
    )

    [message] = json.loads(stdout)["messages"]
    assert message["final"], stderr.decode()
    assert message["uuid"] == world.uuid_of(fresh)
    [receipt] = message["receipts"]
    assert receipt["kind"] == "rejected"  # no one accepts a confirmation in the examples
    assert b"no final receipt" not in stdout
    assert returncode == 1


async def test_signed_files_of_two_signers_without_as_name_the_option(
    world: World, amqp_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name, kennung in (("a.xml", "psw:02000000"), ("b.xml", "psw:01060063")):
        fresh = world.fresh_standard_sample("xmeld/1.1", "meldung.anmeldung.bestaetigung.0201")
        (folder / name).write_bytes(party_signer(world.settings, kennung).sign(fresh))

    returncode, _, stderr = await _publish(world, amqp_url, tmp_path, str(folder), "--signed")

    assert returncode == 2
    assert b"psw:01060063, psw:02000000" in stderr and b"--as" in stderr


async def test_bulk_publish_reports_every_message_as_json(
    world: World, amqp_url: str, tmp_path: Path
) -> None:
    await world.portal.close()  # the CLI is the portal now: one consumer of its receipts
    folder = tmp_path / "outbox"
    folder.mkdir()
    for sample in sorted(SUBMISSIONS.glob("*.xml")):
        fresh = world.fresh(sample.name)
        (folder / sample.name).write_bytes(etree.tostring(fresh, xml_declaration=True))
    returncode, stdout, stderr = await _publish(
        world, amqp_url, tmp_path, str(folder), "--json", "--progress"
    )

    report = json.loads(stdout)
    by_file = {Path(m["file"]).name: m for m in report["messages"]}
    assert returncode == 1, "one submission is invalid"
    assert report["ok"] is False
    assert all(m["final"] for m in report["messages"])
    kinds = [r["kind"] for r in by_file["anmeldung-hamburg.xml"]["receipts"]]
    assert kinds == ["accepted", "delivered"]
    (rejected,) = by_file["invalid-anmeldung-missing-birthdate.xml"]["receipts"]
    assert (rejected["kind"], rejected["reason"]) == ("rejected", "schema-invalid")
    assert b"4/4" in stderr and b"100%" in stderr, stderr.decode()
