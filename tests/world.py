"""The example world, running in-process against the test session's RabbitMQ vhost.

A broker worker, one agency client per example agency (recording what it receives),
and the portal (recording its receipts), all with the development PKI made for the run.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lxml import etree
from prometheus_client import CollectorRegistry

from broker.app import Parts, build_broker, load_parts, party_keys, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.errors import PublishError
from broker.sdk.agency import AgencyClient, Delivery, Handler, default_seen_path
from broker.sdk.portal import Portal
from broker.settings import Settings, load_settings
from broker.stores.backend import Stores
from broker.worker.service import BrokerService
from routing import AmqpEndpoint
from signing import Signer, parse_untrusted
from tests.polling import eventually
from xta_schemas.samples import sample_root, with_fresh_header

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SUBMISSIONS = EXAMPLES / "submissions"

# Two more agencies that receive a copy of every trade registration and send nothing:
# a trade registration then fans out to three agencies, two of them without receipt queue.
NOTIFIED = """
[[agency]]
kennung = "fa:02000000"
name = "Finanzamt Hamburg"
certificates = ["fa_02000000.crt"]
encryption = ["fa_02000000.enc.crt"]
notify = ["gewerbe.anmeldung.*"]

[[agency]]
kennung = "ihk:02000000"
name = "Handelskammer Hamburg"
certificates = ["ihk_02000000.crt"]
encryption = ["ihk_02000000.enc.crt"]
notify = ["gewerbe.anmeldung.0100"]
"""


def fan_out_directory(folder: Path) -> Path:
    """The example directory with the two notified agencies, written to ``folder``."""
    directory = folder / "directory.toml"
    example = (EXAMPLES / "directory.toml").read_text(encoding="utf-8")
    directory.write_text(example + NOTIFIED, encoding="utf-8")
    return directory


@dataclass
class World:
    settings: Settings
    parts: Parts
    registry: CollectorRegistry
    broker: BrokerService
    portal: Portal
    portal_signer: Signer
    agencies: dict[str, AgencyClient]
    received: dict[str, list[Delivery]] = field(default_factory=lambda: defaultdict(list))
    refuse: set[str] = field(default_factory=set)  # uuids the agency handlers fail on

    def fresh(self, sample: str) -> etree._Element:
        """An example submission with a new nachrichtenUUID and creation time."""
        root = parse_untrusted((SUBMISSIONS / sample).read_bytes())
        standard, _ = self.parts.catalog.identify(root)
        return with_fresh_header(root, standard)

    def fresh_standard_sample(self, key: str, code: str) -> etree._Element:
        """A bundled standard's sample message with a new nachrichtenUUID and time."""
        standard = self.parts.catalog.get(key)
        return with_fresh_header(sample_root(standard, code), standard)

    def uuid_of(self, root: etree._Element) -> str:
        standard, _ = self.parts.catalog.identify(root)
        return standard.header(root).uuid

    async def settled(self, uuid: str, timeout: float = 30.0) -> None:
        """Wait until the broker has decided ``uuid``: its accepted (or rejected) event
        is written, which happens before the ingress ack (with confirms, in the same
        write as the dedup completion). A receipt can arrive at the portal before that."""
        stores = Stores(self.settings)
        store = stores.status()

        async def ends() -> set[str]:
            kinds = {e.kind.value for e in (await store.timeline(uuid)).events}
            return {"accepted", "rejected"} & kinds

        try:
            await eventually(
                ends, what=f"{uuid} accepted or rejected in the status store", timeout=timeout
            )
        finally:
            await stores.close()

    def receivers_of(self, uuid: str) -> list[str]:
        return sorted(k for k, ds in self.received.items() for d in ds if d.uuid == uuid)


def signed_messages(
    settings: Settings, count: int, sample: str = "gewerbe-anmeldung.xml"
) -> list[tuple[str, bytes]]:
    """``count`` copies of a sample submission, each with a fresh header, signed by the
    portal: (nachrichtenUUID, bytes)."""
    parts = load_parts(settings)
    root = parse_untrusted((SUBMISSIONS / sample).read_bytes())
    standard, _ = parts.catalog.identify(root)
    signer = party_signer(settings, settings.portal_kennung)
    out = []
    for _ in range(count):
        fresh = with_fresh_header(root, standard)
        out.append((standard.header(fresh).uuid, signer.sign(fresh)))
    return out


async def publish_all(
    portal: Portal, bodies: Iterable[bytes], publishers: int = 16, stall: float = 120.0
) -> None:
    """Publish every body; a publish that fails or times out is repeated (the broker
    deduplicates), as a portal must.

    On a busy machine publishing is slow, and a node being restarted refuses it for a
    while: that is waited for as long as some publish still succeeds now and then. When
    none has for ``stall`` seconds (the node never came back, the portal never
    reconnected), it fails saying how many are left and the last error.
    """
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    total = queue.qsize()
    loop = asyncio.get_running_loop()
    progress = loop.time()
    last_error: BaseException | None = None

    async def publish(body: bytes) -> None:
        nonlocal progress, last_error
        pause = 0.5
        while True:
            try:
                async with asyncio.timeout(stall):  # a publish hung past its own deadline
                    await portal.submit(body, sign=False)
            except (PublishError, ConnectionError, RuntimeError, TimeoutError) as exc:
                last_error = exc
            else:
                progress = loop.time()
                return
            if loop.time() - progress > stall:
                left = queue.qsize() + 1
                raise AssertionError(
                    f"publishing stalled: no publish succeeded for {stall:g} s, "
                    f"{left} or more of {total} messages not published; "
                    f"last error: {last_error!r}"
                )
            # Every repeat the broker takes is one more duplicate receipt for the portal
            # to verify: repeating fast under load feeds the load that made it fail.
            await asyncio.sleep(pause)
            pause = min(pause * 2, 8.0)

    async def publisher() -> None:
        while not queue.empty():
            await publish(queue.get_nowait())

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(publishers):
                group.create_task(publisher())
    except* AssertionError as stalled:
        raise stalled.exceptions[0] from None


@dataclass(frozen=True)
class OfflineWorld:
    """The example world's parts and the portal's signer, without RabbitMQ."""

    parts: Parts
    portal_signer: Signer

    def signed(self, sample: str) -> bytes:
        """An example submission with a fresh header, signed by the portal."""
        root = parse_untrusted((SUBMISSIONS / sample).read_bytes())
        standard, _ = self.parts.catalog.identify(root)
        return self.portal_signer.sign(with_fresh_header(root, standard))


def offline_world(state_dir: Path) -> OfflineWorld:
    settings = load_settings(EXAMPLES / "xbroker.toml", state_dir=state_dir)
    ensure_dev_pki(settings)
    return OfflineWorld(load_parts(settings), party_signer(settings, settings.portal_kennung))


def agency_client(
    amqp_url: str,
    settings: Settings,
    parts: Parts,
    kennung: str,
    handler: Handler,
    seen_path: Path | Literal[":memory:"],
) -> AgencyClient:
    """An agency client of ``kennung`` with its own signing key and every encryption key
    it holds under the settings' PKI (so that its sealed copies open)."""
    return AgencyClient(
        amqp_url,
        kennung,
        party_signer(settings, kennung),
        parts.verifier(),
        handler,
        seen_path=seen_path,
        keys=party_keys(settings, kennung),
    )


def metrics_url_of(rabbitmq: Any) -> str | None:
    """The rabbitmq_prometheus endpoint of the test session's local node, if local."""
    node = getattr(rabbitmq, "node", None)
    return f"http://127.0.0.1:{node.prometheus_port}" if node is not None else None


@asynccontextmanager
async def running_world(
    amqp_url: str,
    state_dir: Path,
    *,
    rabbitmq_metrics_url: str | None = None,
    agencies: set[str] | None = None,
    **overrides: object,
) -> AsyncIterator[World]:
    """``agencies``: which agency clients run (default: all); ``overrides``: settings."""
    settings = load_settings(
        EXAMPLES / "xbroker.toml",
        amqp_url=amqp_url,
        state_dir=state_dir,
        metrics_port=0,
        queue_sample_seconds=0.2,
        rabbitmq_metrics_url=rabbitmq_metrics_url,
        **overrides,
    )
    ensure_dev_pki(settings)
    parts = load_parts(settings)
    registry = CollectorRegistry()
    broker = build_broker(parts, registry)
    await broker.start()
    portal_signer = party_signer(settings, settings.portal_kennung)
    portal = Portal(amqp_url, settings.portal_kennung, portal_signer, parts.verifier())
    world = World(settings, parts, registry, broker, portal, portal_signer, {})
    for agency in parts.directory:
        if not (isinstance(agency.endpoint, AmqpEndpoint) and agency.accepts):
            continue
        if agencies is not None and agency.kennung not in agencies:
            continue

        async def record(delivery: Delivery, kennung: str = agency.kennung) -> None:
            if delivery.uuid in world.refuse:
                raise RuntimeError("the agency's system is down")
            world.received[kennung].append(delivery)

        client = agency_client(
            amqp_url,
            settings,
            parts,
            agency.kennung,
            record,
            default_seen_path(agency.kennung, state_dir),
        )
        await client.start()
        world.agencies[agency.kennung] = client
    await portal.start()
    try:
        yield world
    finally:
        await portal.close()
        for client in world.agencies.values():
            await client.close()
        await broker.stop()
        await asyncio.sleep(0)


def webhook_directory(tmp: Path, url: str, secret_env: str, *, sealed: bool = True) -> Path:
    """The example directory with the trade office (gew:02000000) reached by webhook at
    ``url``; ``sealed=False`` sends it its copies in clear."""
    text = (EXAMPLES / "directory.toml").read_text(encoding="utf-8")
    marker = 'may_send = ["gewerbe.anmeldung.bestaetigung.*"]\n'
    assert marker in text
    endpoint = f'endpoint = {{ kind = "webhook", url = "{url}", secret_env = "{secret_env}" }}\n'
    text = text.replace(marker, marker + endpoint + ("" if sealed else "sealed = false\n"))
    path = tmp / "directory.toml"
    path.write_text(text, encoding="utf-8")
    return path
