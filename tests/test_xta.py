"""The XTA 2 endpoint, driven by the independent client xta-tool (the ``xta`` command).

One endpoint for the module, on loopback with TLS client certificates of the
development PKI, in front of the example world (broker worker, portal, agencies) on a
vhost of the module's own. The portal sends over XTA; the Bauprüfabteilung
(``bau:02000000``), whose inbox is an XTA message box, lists, fetches and closes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from monitoring.labels import ReceiptKind
from tests.xta_support import AGENCY, PORTAL, XtaWorld, running_xta_world
from tests.xta_tool import XtaClient, XtaResult

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 60.0


@pytest.fixture(scope="module")
async def xta(
    module_vhost_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[XtaWorld]:
    async with running_xta_world(module_vhost_url, tmp_path_factory.mktemp("xta")) as world:
        yield world


def write_message(
    folder: Path,
    message: bytes,
    *,
    author: str = PORTAL,
    reader: str = AGENCY,
    attachments: dict[str, bytes] | None = None,
) -> Path:
    """A folder xta-tool sends from: ``xta-message.yaml`` and the files it names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "antrag.xml").write_bytes(message)
    files = []
    for name, content in (attachments or {}).items():
        (folder / name).write_bytes(content)
        files.append({"file_name": name, "content": name, "content_type": "application/pdf"})
    description = {
        "metadata": {
            "author": {"value": author, "category": "Portal"},
            "reader": {"value": reader, "category": "Bauaufsicht"},
            "service": "urn:xoev-de:xbau:standard:xbau",
            "business_scenario": {
                "code": "XBAU_DATA",
                "list_uri": "urn:de:xta:codeliste:business.scenario",
            },
            "message_type": {
                "code": "bau.antrag.0200",
                "list_uri": "urn:xoev-de:xbau:codeliste:nachrichtentyp",
                "list_version_id": "1.0",
            },
            "message_type_payload_schema": "http://www.xbroker.example/xbau/1.0",
        },
        "message": {
            "file_name": "antrag.xml",
            "content": "antrag.xml",
            "content_type": "application/xml",
        },
        "attachments": files,
    }
    # YAML is a superset of JSON: xta-tool reads this as its message description.
    (folder / "xta-message.yaml").write_text(json.dumps(description, indent=2))
    return folder


def signed_antrag(xta: XtaWorld) -> tuple[bytes, str]:
    root = xta.world.fresh_standard_sample("xbau/1.0", "bau.antrag.0200")
    return xta.world.portal_signer.sign(root), xta.world.uuid_of(root)


async def listed(client: XtaClient) -> list[str]:
    return (await client.run("ls")).check().stdout.split()


async def fetch(client: XtaClient, message_id: str, folder: Path) -> Path:
    """``xta get`` into a folder: the message and its attachments as files."""
    folder.mkdir(parents=True, exist_ok=True)
    (await client.run("get", message_id, str(folder))).check()
    return folder


async def until_listed(client: XtaClient, message_id: str) -> None:
    async with asyncio.timeout(TIMEOUT):
        while message_id not in await listed(client):
            await asyncio.sleep(0.2)


def fault_of(result: XtaResult) -> dict[str, str]:
    """xta-tool's report of a SOAP fault: ``[Soap Fault] {json}`` on stderr."""
    assert result.returncode != 0, result.stdout
    line = next((line for line in result.stderr.splitlines() if "[Soap Fault]" in line), None)
    assert line is not None, result.stderr
    fault: dict[str, str] = json.loads(line.split("[Soap Fault]", 1)[1])
    return fault


async def send(xta: XtaWorld, tmp_path: Path, message: bytes, **kwargs: object) -> str:
    portal = xta.client(PORTAL)
    message_id = (await portal.run("new")).check().stdout.strip()
    folder = write_message(tmp_path / "out", message, **kwargs)  # type: ignore[arg-type]
    (await portal.run("send", message_id, str(folder))).check()
    return message_id


async def test_send_list_get_close_inspect(xta: XtaWorld, tmp_path: Path) -> None:
    portal, agency = xta.client(PORTAL), xta.client(AGENCY)
    message, uuid = signed_antrag(xta)

    message_id = await send(xta, tmp_path, message)
    await until_listed(agency, message_id)
    await fetch(agency, message_id, tmp_path / "in")
    (await agency.run("close", message_id)).check()
    state = await xta.world.portal.wait_final(uuid, TIMEOUT)
    report = yaml.safe_load((await portal.run("inspect", message_id)).check().stdout)

    assert (tmp_path / "in" / "antrag.xml").read_bytes() == message
    assert message_id not in await listed(agency)
    assert {r.kind for r in state.receipts} == {ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED}
    assert report["status"] == "1"
    assert report["metadata"]["message_id"] == message_id


async def test_a_5_mb_attachment_arrives_byte_identical(xta: XtaWorld, tmp_path: Path) -> None:
    agency = xta.client(AGENCY)
    message, _uuid = signed_antrag(xta)
    pdf = b"%PDF-1.7\n" + os.urandom(5 * 1024 * 1024) + b"\n%%EOF\n"

    message_id = await send(xta, tmp_path, message, attachments={"bauplan.pdf": pdf})
    await until_listed(agency, message_id)
    await fetch(agency, message_id, tmp_path / "in")
    (await agency.run("close", message_id)).check()

    received = (tmp_path / "in" / "bauplan.pdf").read_bytes()
    assert hashlib.sha256(received).hexdigest() == hashlib.sha256(pdf).hexdigest()
    assert (tmp_path / "in" / "antrag.xml").read_bytes() == message
