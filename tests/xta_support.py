"""The example world with its XTA endpoint running, xta-tool configured for it, and
what the XTA tests do with both: message folders, listing, fetching, faults."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import yaml
from lxml import etree
from prometheus_client import CollectorRegistry

from broker.app import Records, open_records
from broker.settings import Settings
from broker.xta import RunningXta, start_xta
from broker.xta.running import dev_tls_paths
from signing.keyfiles import party_paths
from tests.polling import eventually
from tests.world import World, running_world
from tests.xta_client import XtaClient, XtaResult, xta_executable

PORTAL = "osi:hh-portal"
AGENCY = "bau:02000000"  # the example world's XTA agency
TIMEOUT = 60.0
PART_LIMIT = 8 * 1024 * 1024  # room for the 5 MB attachment; small enough to pass in tests


@dataclass
class XtaWorld:
    world: World
    xta: RunningXta
    records: Records
    folder: Path
    registry: CollectorRegistry  # the endpoint's metrics (a new one after each restart)

    def client(self, kennung: str, *, max_list_items: int = 100, name: str = "") -> XtaClient:
        """xta-tool with ``kennung``'s certificate of the development PKI."""
        cert, key = party_paths(self.world.settings.pki, kennung)
        return self.client_with(kennung, cert, key, max_list_items=max_list_items, name=name)

    def client_with(
        self,
        identifier: str,
        cert: Path,
        key: Path,
        *,
        max_list_items: int = 100,
        name: str = "",
    ) -> XtaClient:
        folder = self.folder / (name or f"{identifier.replace(':', '_')}-{max_list_items}")
        return XtaClient.configure(
            xta_executable(),
            folder,
            base_url=self.xta.url,
            cafile=self.world.settings.pki / "ca" / "ca.crt",
            certfile=cert,
            keyfile=key,
            identifier=identifier,
            max_list_items=max_list_items,
        )

    async def restart(self) -> None:
        """Stop the endpoint and start a new one on the same port (a process restart:
        nothing of the old one's memory survives)."""
        settings = self.world.settings.model_copy(update={"xta_port": self.xta.server.port})
        await self.stop()
        # A new registry: a new process starts with new metrics.
        self.registry = CollectorRegistry()
        self.xta, self.records = await _start(self.world, self.registry, settings)

    async def stop(self) -> None:
        await self.xta.stop()
        await self.records.close()

    @asynccontextmanager
    async def second_endpoint(self) -> AsyncIterator[XtaWorld]:
        """Another endpoint (as another process would run it) over the same RabbitMQ and
        the same store, on a port of its own."""
        registry = CollectorRegistry()
        xta, records = await _start(self.world, registry)
        other = XtaWorld(self.world, xta, records, self.folder / "second", registry)
        try:
            yield other
        finally:
            await other.stop()


async def _start(
    world: World, registry: CollectorRegistry, settings: Settings | None = None
) -> tuple[RunningXta, Records]:
    parts = world.parts if settings is None else replace(world.parts, settings=settings)
    records = open_records(parts.settings)
    xta = await start_xta(
        parts, records, registry, world.broker.metrics, lambda: world.broker.directory
    )
    return xta, records


@asynccontextmanager
async def running_xta_world(
    amqp_url: str, folder: Path, *, agencies: set[str] | None = None, **overrides: object
) -> AsyncIterator[XtaWorld]:
    """``agencies``: which AMQP agency clients run (default: all); ``overrides``: settings."""
    xta_executable()  # install (or skip/fail) before starting anything
    async with running_world(
        amqp_url,
        folder / "state",
        agencies=agencies,
        **{
            "xta_port": 0,
            "xta_max_part_bytes": PART_LIMIT,
            "xta_max_request_bytes": 2 * PART_LIMIT,
            **overrides,
        },
    ) as world:
        assert dev_tls_paths(world.settings)[0].is_file()
        xta, records = await _start(world, world.registry)
        xta_world = XtaWorld(world, xta, records, folder / "xta", world.registry)
        try:
            yield xta_world
        finally:
            await xta_world.stop()


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


def folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


async def fetch(client: XtaClient, message_id: str, into: Path) -> Path:
    """``xta get`` into a folder: the message and its attachments as files."""
    (await client.run("get", message_id, str(folder(into)))).check()
    return into


async def until_listed(client: XtaClient, message_id: str) -> None:
    await eventually(
        lambda: listed(client),
        until=lambda ids: message_id in ids,
        what=f"{message_id} listed",
        interval=0.2,
    )


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


async def listed_all(xta: XtaWorld) -> list[str]:
    """Every open message id of the agency's box (the store: xta-tool lists 100 at most)."""
    entries, _ = xta.xta.store.waiting(AGENCY, 10_000)
    return [e.message_id for e in entries]


async def rejected_in_report(xta: XtaWorld, message_id: str) -> dict[str, object]:
    portal = xta.client(PORTAL)

    async def report() -> dict[str, object]:
        found: dict[str, object] = yaml.safe_load(
            (await portal.run("inspect", message_id)).check().stdout
        )
        return found

    return await eventually(
        report,
        until=lambda found: found["status"] != "0",
        what=f"{message_id} rejected in the transport report",
        interval=0.2,
    )


def https(xta: XtaWorld, kennung: str) -> httpx.AsyncClient:
    context = ssl.create_default_context(cafile=xta.world.settings.pki / "ca" / "ca.crt")
    context.load_cert_chain(*party_paths(xta.world.settings.pki, kennung))
    return httpx.AsyncClient(base_url=xta.xta.url, verify=context, timeout=30)


def soap_fault(response: httpx.Response) -> tuple[str, str]:
    """(detail element's local name, reason) of a SOAP 1.2 fault response."""
    root = etree.fromstring(response.content)
    detail = root.find(".//{http://www.w3.org/2003/05/soap-envelope}Detail/*")
    reason = root.findtext(".//{http://www.w3.org/2003/05/soap-envelope}Text")
    assert detail is not None and reason is not None
    return etree.QName(detail).localname, reason
