"""Several broker hosts on one PostgreSQL: one claim across hosts, one Laufzettel for all.

Two "hosts" are two broker workers with state dirs of their own, on the same RabbitMQ
vhost and the same database. Copies are counted in RabbitMQ (the agencies' inboxes, with
no agency reading them), not at an agency that might deduplicate them itself.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx
import pytest
from prometheus_client import CollectorRegistry

from broker.amqp import topology
from broker.app import Records, load_parts, open_records, party_signer
from broker.cli import main
from broker.commands.demo import ensure_dev_pki
from broker.http_api import (
    ApiLimits,
    Authenticator,
    IngressPublisher,
    TokenTable,
    build_api,
    hash_token,
)
from broker.sdk.portal import Portal
from broker.settings import Settings, load_settings
from broker.stores.dedup import Claim, DedupStore
from broker.stores.journal import EventKind, StatusEvent
from broker.stores.status import Laufzettel
from broker.worker.service import BrokerService
from monitoring.labels import ReceiptKind
from signing import parse_untrusted
from tests.polling import eventually
from tests.worker_support import worker
from xta_schemas.samples import with_fresh_header

pytestmark = pytest.mark.rabbitmq

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLE = EXAMPLES / "submissions" / "anmeldung-hamburg.xml"
TOKEN = secrets.token_urlsafe(16)


class Together:
    """Holds each worker's first claim of a message until every worker has made one, then
    lets them all go at once: the race of two hosts taking the same message, forced."""

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._arrived: dict[str, int] = {}
        self._go: dict[str, asyncio.Event] = {}

    async def meet(self, uuid: str) -> None:
        go = self._go.setdefault(uuid, asyncio.Event())
        self._arrived[uuid] = self._arrived.get(uuid, 0) + 1
        if self._arrived[uuid] >= self._workers:
            go.set()
        await asyncio.wait_for(go.wait(), 60)


class RacingDedup:
    """A worker's dedup store whose first claim of each message waits for the others',
    and whose answer waits until the others have theirs: neither worker goes on (and
    completes its claim) before both have claimed, so one of them finds the other's
    claim pending, however the machine schedules them."""

    def __init__(self, store: DedupStore, together: Together) -> None:
        self._store = store
        self._together = together
        self._met: set[str] = set()
        self.claims: list[Claim] = []

    async def claim(self, author: str, uuid: str, digest: str) -> Claim:
        first = uuid not in self._met
        self._met.add(uuid)
        if first:
            await self._together.meet(uuid)
        claim = await self._store.claim(author, uuid, digest)
        self.claims.append(claim)
        if first:
            await self._together.meet(f"{uuid} claimed")
        return claim

    def __getattr__(self, name: str) -> Callable[..., Awaitable[object]]:
        return getattr(self._store, name)  # type: ignore[no-any-return]


@dataclass
class Host:
    settings: Settings
    records: Records
    broker: BrokerService
    dedup: RacingDedup


@dataclass
class Hosts:
    a: Host
    b: Host
    portal: Portal
    amqp_url: str


def _settings(amqp_url: str, state_dir: Path, database_url: str, pki: Path | None) -> Settings:
    overrides: dict[str, object] = {"pki_dir": pki} if pki is not None else {}
    return load_settings(
        EXAMPLES / "xbroker.toml",
        amqp_url=amqp_url,
        state_dir=state_dir,
        metrics_port=0,
        database_url=database_url,
        **overrides,
    )


async def _host(settings: Settings, together: Together) -> Host:
    parts = load_parts(settings)
    records = open_records(settings)
    dedup = RacingDedup(records.stores.dedup(), together)
    broker = worker(
        parts,
        CollectorRegistry(),
        dedup=dedup,  # type: ignore[arg-type]
        journal=records.journal(),
    )
    await broker.start()
    return Host(settings, records, broker, dedup)


@pytest.fixture
async def hosts(module_vhost_url: str, database_url: str, tmp_path: Path) -> AsyncIterator[Hosts]:
    first = _settings(module_vhost_url, tmp_path / "host-a", database_url, None)
    ensure_dev_pki(first)
    # The hosts share the PKI (the broker's key, the trust store) and nothing else.
    second = _settings(module_vhost_url, tmp_path / "host-b", database_url, first.pki)
    together = Together(workers=2)
    a = await _host(first, together)
    b = await _host(second, together)
    parts = load_parts(first)
    portal = Portal(
        module_vhost_url,
        first.portal_kennung,
        party_signer(first, first.portal_kennung),
        parts.verifier(),
    )
    await portal.start()
    try:
        yield Hosts(a, b, portal, module_vhost_url)
    finally:
        await portal.close()
        for host in (a, b):
            await host.broker.stop()
            await host.records.close()


async def _laufzettel(host: Host, uuid: str) -> Laufzettel:
    return await host.records.status.timeline(uuid)


async def _inbox_depth(amqp_url: str, kennung: str) -> int:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.agency_queue(kennung), passive=True)
        return int(queue.declaration_result.message_count or 0)
    finally:
        await connection.close()


def _signed(hosts: Hosts) -> bytes:
    settings = hosts.a.settings
    parts = load_parts(settings)
    root = parse_untrusted(SAMPLE.read_bytes())
    standard, _ = parts.catalog.identify(root)
    signer = party_signer(settings, settings.portal_kennung)
    return signer.sign(with_fresh_header(root, standard))


async def test_two_hosts_given_the_same_message_at_once_publish_one_set_of_copies(
    hosts: Hosts,
) -> None:
    body = _signed(hosts)
    # The same bytes twice in the ingress queue; each host takes one (their first claims
    # wait for each other), so both claim the message at the same moment.
    uuid = await hosts.portal.submit(body, sign=False)
    await hosts.portal.submit(body, sign=False)

    async def ended() -> list[EventKind]:
        return [e.kind for e in (await _laufzettel(hosts.b, uuid)).events]

    kinds = await eventually(
        ended,
        until=lambda k: EventKind.ACCEPTED in k and EventKind.DUPLICATE in k,
        what=f"{uuid} accepted by one host and a duplicate at the other",
        timeout=60,
    )
    receipts = await eventually(
        lambda: [r.kind for r in hosts.portal.state(uuid).receipts],
        until=lambda k: ReceiptKind.ACCEPTED in k and ReceiptKind.DUPLICATE in k,
        what="an accepted and a duplicate receipt",
    )

    claims = [c.state.value for h in (hosts.a, hosts.b) for c in h.dedup.claims]
    laufzettel = await _laufzettel(hosts.a, uuid)
    assert "new" in claims and "busy" in claims, claims  # they did race
    assert kinds.count(EventKind.ACCEPTED) == 1
    assert kinds.count(EventKind.QUEUED) == len(laufzettel.recipients)
    assert receipts.count(ReceiptKind.ACCEPTED) == 1
    for kennung in laufzettel.recipients:
        assert await _inbox_depth(hosts.amqp_url, kennung) == 1, kennung


async def test_host_b_shows_the_laufzettel_that_host_a_wrote(
    hosts: Hosts, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uuid = "2f0b6c1e-7d3a-4e55-9a01-b2c3d4e5f607"
    author = hosts.a.settings.portal_kennung
    # Written by host A as its worker writes: one batch in one transaction.
    await hosts.a.records.status.record_many(
        [
            StatusEvent(uuid, EventKind.RECEIVED, author=author),
            StatusEvent(uuid, EventKind.ACCEPTED, author=author, recipients=("psw:02000000",)),
            StatusEvent(uuid, EventKind.QUEUED, author=author, agency="psw:02000000"),
        ]
    )
    config = tmp_path / "host-b.toml"
    config.write_text(
        f'state_dir = "{hosts.b.settings.state_dir}"\n'
        f'database_url = "{hosts.b.settings.database_url}"\n'
    )

    code = await asyncio.to_thread(main, ["--config", str(config), "status", uuid, "--json"])
    printed = json.loads(capsys.readouterr().out)

    ingress = IngressPublisher(hosts.amqp_url, confirm_timeout=5.0)
    await ingress.start()
    app = build_api(
        status=hosts.b.records.status,
        ingress=ingress,
        catalog=load_parts(hosts.b.settings).catalog,
        authenticate=Authenticator(TokenTable({hash_token(TOKEN): author})),
        limits=ApiLimits(max_body_bytes=1024, queue_limit=1000),
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://host-b") as client:
            response = await client.get(
                f"/v1/messages/{uuid}", headers={"authorization": f"Bearer {TOKEN}"}
            )
    finally:
        await ingress.close()

    assert code == 0
    assert [e["kind"] for e in printed["events"]] == ["received", "accepted", "queued"]
    assert response.status_code == 200
    assert response.json()["state"] == "queued"
    assert response.json()["recipients"] == ["psw:02000000"]
