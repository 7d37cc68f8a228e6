"""The example world with its XTA endpoint running, and xta-tool configured for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from prometheus_client import CollectorRegistry

from broker.app import Records, open_records
from broker.settings import Settings
from broker.xta import RunningXta, start_xta
from broker.xta.running import dev_tls_paths
from signing.keyfiles import party_paths
from tests.world import World, running_world
from tests.xta_client import XtaClient, xta_executable

PORTAL = "osi:hh-portal"
AGENCY = "bau:02000000"  # the example world's XTA agency
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
        self.records.close()


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
async def running_xta_world(amqp_url: str, folder: Path) -> AsyncIterator[XtaWorld]:
    xta_executable()  # install (or skip/fail) before starting anything
    async with running_world(
        amqp_url,
        folder / "state",
        xta_port=0,
        xta_max_part_bytes=PART_LIMIT,
        xta_max_request_bytes=2 * PART_LIMIT,
    ) as world:
        assert dev_tls_paths(world.settings)[0].is_file()
        xta, records = await _start(world, world.registry)
        xta_world = XtaWorld(world, xta, records, folder / "xta", world.registry)
        try:
            yield xta_world
        finally:
            await xta_world.stop()
