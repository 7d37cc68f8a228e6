"""Published XÖV releases as test material: where they are, and how tests serve them.

The releases are read where they lie (``XBROKER_XOEV_RELEASES``, else
``<project>/../shared/xoev-releases``, else ``/work/shared/xoev-releases``), never copied
into the project. A test serves one by making a standard folder in its tmp_path: the
manifest from ``examples/standards/`` and symbolic links to the release's folders. lxml's
own verdict on an instance is computed from the release's schema file that declares the
instance's root, compiled by plain lxml with the manifest's URL map as its only resolver.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lxml import etree
from prometheus_client import CollectorRegistry

from broker.app import Parts, build_broker, load_parts, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.receipts.document import Receipt
from broker.sdk.agency import AgencyClient, Delivery, default_seen_path
from broker.sdk.portal import Portal
from broker.settings import Settings, load_settings
from tests import tools
from xta_schemas.manifest import read_manifest

__all__ = [
    "EXAMPLE_MANIFESTS",
    "ReleaseWorld",
    "lxml_verdict",
    "release_world",
    "releases_root",
    "serve_release",
]

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE_MANIFESTS = PROJECT / "examples" / "standards"
XSD = "{http://www.w3.org/2001/XMLSchema}"


def releases_root() -> Path:
    """The folder of published releases; a missing one fails in CI, else skips."""
    candidates = [
        Path(os.environ["XBROKER_XOEV_RELEASES"])
        if os.environ.get("XBROKER_XOEV_RELEASES")
        else None,
        PROJECT.parent / "shared" / "xoev-releases",
        Path("/work/shared/xoev-releases"),
    ]
    for candidate in candidates:
        if candidate is not None and (candidate / "README.md").is_file():
            return candidate
    tools.unavailable("the published XÖV releases", "set XBROKER_XOEV_RELEASES to their folder")


def serve_release(tmp_path: Path, name: str, release: Path, folders: tuple[str, ...]) -> Path:
    """``tmp_path/name``: the example manifest ``name`` beside links to ``folders`` of
    ``release``, as an operator lays a release out. Returns the standard folder."""
    folder = tmp_path / name
    folder.mkdir(parents=True)
    shutil.copy(EXAMPLE_MANIFESTS / name / "manifest.toml", folder / "manifest.toml")
    for sub in folders:
        (folder / sub).symlink_to(release / sub, target_is_directory=True)
    return folder


def _schema_files(folder: Path) -> list[Path]:
    """Every XSD under ``folder``, through the links to the release."""
    return sorted(
        Path(top) / name
        for top, _, names in os.walk(folder, followlinks=True)
        for name in names
        if name.endswith(".xsd")
    )


class _UrlMap(etree.Resolver):
    def __init__(self, table: dict[str, Path]) -> None:
        super().__init__()
        self._table = table

    def resolve(self, system_url: str | None, public_id: str | None, context: Any) -> Any:  # type: ignore[override]
        target = self._table.get(system_url or "")
        return self.resolve_filename(str(target), context) if target else None  # type: ignore[attr-defined]


def lxml_verdict(folder: Path, instance: Path) -> bool:
    """Plain lxml: is ``instance`` valid against the release file declaring its root?"""
    manifest = read_manifest(folder)
    root = etree.parse(str(instance)).getroot()
    name = etree.QName(root).localname
    declaring = [
        path
        for path in _schema_files(folder)
        if any(
            e.get("name") == name
            for e in etree.parse(str(path)).getroot().iterchildren(f"{XSD}element")
        )
    ]
    assert len(declaring) == 1, f"{name} is declared in {declaring}"
    parser = etree.XMLParser(no_network=True, load_dtd=False, resolve_entities=False)
    parser.resolvers.add(
        _UrlMap({url: folder / target for url, target in manifest.url_map.items()})
    )
    schema = etree.XMLSchema(etree.parse(str(declaring[0]), parser))
    return bool(schema.validate(root))


@dataclass
class ReleaseWorld:
    """A broker, one agency client per accepting participant (receiving its test inbox
    when ``test``), and a portal per author, on the test session's vhost."""

    settings: Settings
    parts: Parts
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    portals: dict[str, Portal] = field(default_factory=dict)
    received: dict[str, list[Delivery]] = field(default_factory=lambda: defaultdict(list))
    receipts: list[Receipt] = field(default_factory=list)

    async def portal(self, author: str) -> Portal:
        """The portal SDK signing as ``author`` and receiving its receipts."""
        if author not in self.portals:
            portal = Portal(
                self.settings.amqp_url,
                author,
                party_signer(self.settings, author),
                self.parts.verifier(),
                catalog=self.parts.catalog,
            )
            await portal.start()
            self.portals[author] = portal
        return self.portals[author]

    def receivers_of(self, uuid: str) -> list[str]:
        return sorted(k for k, got in self.received.items() for d in got if d.uuid == uuid)

    def bodies_of(self, uuid: str, author: str) -> list[bytes]:
        """The bytes each reader of ``author``'s ``uuid`` received."""
        return [
            d.body
            for got in self.received.values()
            for d in got
            if d.uuid == uuid and d.author == author
        ]


def _write_directory(state_dir: Path, directory: str) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "directory.toml").write_text(directory, encoding="utf-8")


@asynccontextmanager
async def release_world(
    amqp_url: str, state_dir: Path, directory: str, standard: Path, *, test: bool
) -> AsyncIterator[ReleaseWorld]:
    """``directory``: the directory file's TOML (certificates ``<kennung>.crt``-style)."""
    _write_directory(state_dir, directory)
    settings = load_settings(
        EXAMPLE_MANIFESTS.parent / "xbroker.toml",
        amqp_url=amqp_url,
        state_dir=state_dir,
        directory=state_dir / "directory.toml",
        pki_dir=state_dir / "pki",
        standard_dirs=(standard,),
        metrics_port=0,
    )
    ensure_dev_pki(settings)
    parts = load_parts(settings)
    world = ReleaseWorld(settings, parts)
    broker = build_broker(parts, world.registry)
    await broker.start()
    clients = []
    for agency in parts.directory:
        if not agency.accepts:
            continue

        async def record(delivery: Delivery, kennung: str = agency.kennung) -> None:
            world.received[kennung].append(delivery)

        client = AgencyClient(
            amqp_url,
            agency.kennung,
            party_signer(settings, agency.kennung),
            parts.verifier(),
            record,
            test=test,
            seen_path=default_seen_path(agency.kennung, state_dir),
        )
        await client.start()
        clients.append(client)
    try:
        yield world
    finally:
        for portal in world.portals.values():
            await portal.close()
        for client in clients:
            await client.close()
        await broker.stop()
        await asyncio.sleep(0)
