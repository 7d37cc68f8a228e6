"""Webhook delivery on a real RabbitMQ node to a real HTTPS endpoint on 127.0.0.1.

The endpoint is a uvicorn server with a certificate from a CA made for the test; the
broker trusts that CA through ``webhook_ca_file``, exactly as it would trust a
Behördennetz CA. The gewerbe agency of the example directory is switched to a webhook;
retries use a schedule of fractions of a second.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import secrets
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from prometheus_client import CollectorRegistry
from standardwebhooks.webhooks import Webhook

from broker.app import build_broker, load_parts, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.errors import DeliveryFailure
from broker.receipts.document import Receipt
from broker.sdk.portal import Portal
from broker.settings import Settings, load_settings
from broker.webhook.deliverer import WebhookDeliverer
from broker.worker.service import BrokerService
from monitoring.labels import ReceiptKind
from signing import parse_untrusted
from tests.polling import eventually
from tests.world import webhook_directory
from xta_schemas.samples import with_fresh_header

pytestmark = pytest.mark.rabbitmq

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
AGENCY = "gew:02000000"
SAMPLE = "gewerbe-anmeldung.xml"
SCHEDULE = (0.2, 0.4, 0.6, 0.8, 0.8, 0.8)  # 3.6 s in all
TIMEOUT = 30.0


# the endpoint


@dataclass
class Push:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """An ASGI webhook endpoint that answers ``status`` (or ``status_of`` a webhook-id)
    and records every push."""

    status: int = 200
    status_of: dict[str, int] = field(default_factory=dict)
    pushes: list[Push] = field(default_factory=list)

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        body = b""
        while True:
            chunk = await receive()
            body += chunk.get("body", b"")
            if not chunk.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        status = self.status_of.get(headers.get("webhook-id", ""), self.status)
        self.pushes.append(Push(headers, body, status))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    def accepted_ids(self) -> Counter[str]:
        return Counter(p.headers["webhook-id"] for p in self.pushes if p.status == 200)

    def attempts(self) -> Counter[str]:
        return Counter(p.headers["webhook-id"] for p in self.pushes)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for 127.0.0.1 issued by it."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("webhook test CA"))
        .issuer_name(_name("webhook test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "server.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca_file, cert_file, key_file


@asynccontextmanager
async def https_endpoint(receiver: Receiver, cert: Path, key: Path) -> AsyncIterator[str]:
    """Serve ``receiver`` over HTTPS on a free port of 127.0.0.1; yield its URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        receiver,
        ssl_certfile=str(cert),
        ssl_keyfile=str(key),
        lifespan="off",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await eventually(lambda: server.started, what="the endpoint serving", interval=0.01)
    try:
        yield f"https://127.0.0.1:{port}/xbroker"
    finally:
        server.should_exit = True
        await task
        sock.close()


# the world: broker, portal, endpoint


@dataclass
class WebhookWorld:
    settings: Settings
    registry: CollectorRegistry
    broker: BrokerService
    portal: Portal
    receiver: Receiver
    secret: str

    @property
    def deliverer(self) -> WebhookDeliverer:
        assert self.broker.webhooks is not None
        return self.broker.webhooks

    async def submit(self) -> str:
        root = parse_untrusted((EXAMPLES / "submissions" / SAMPLE).read_bytes())
        standard, _ = self.broker._pipeline.catalog.identify(root)
        return await self.portal.submit(with_fresh_header(root, standard))

    def receipts(self, uuid: str, kind: ReceiptKind) -> list[Receipt]:
        return [r for r in self.portal.state(uuid).receipts if r.kind is kind]

    async def wait_receipt(self, uuid: str, kind: ReceiptKind) -> Receipt:
        receipts = await eventually(
            lambda: self.receipts(uuid, kind), what=f"a {kind} receipt for {uuid}"
        )
        return receipts[0]

    async def queue_state(self, name: str) -> tuple[int, int]:
        """Messages ready in the queue, and its consumers."""
        connection = await aio_pika.connect(self.settings.amqp_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            declared = queue.declaration_result
            return declared.message_count or 0, declared.consumer_count or 0

    async def queue_depth(self, name: str) -> int:
        return (await self.queue_state(name))[0]


@pytest.fixture(scope="module")
def monkeymodule() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture(scope="module")
async def world(
    amqp_url: str, tmp_path_factory: pytest.TempPathFactory, monkeymodule: pytest.MonkeyPatch
) -> AsyncIterator[WebhookWorld]:
    tmp = tmp_path_factory.mktemp("webhook")
    ca, cert, key = _tls_files(tmp)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    secret_env = f"XBROKER_TEST_WEBHOOK_SECRET_{secrets.token_hex(4).upper()}"
    monkeymodule.setenv(secret_env, secret)
    receiver = Receiver()
    async with https_endpoint(receiver, cert, key) as url:
        settings = load_settings(
            EXAMPLES / "xbroker.toml",
            amqp_url=amqp_url,
            state_dir=tmp / "state",
            directory=webhook_directory(tmp, url, secret_env, sealed=False),
            metrics_port=0,
            queue_sample_seconds=0.2,
            webhook_retry_seconds=SCHEDULE,
            webhook_ca_file=ca,
            webhook_connect_timeout_seconds=2.0,
            webhook_read_timeout_seconds=2.0,
        )
        ensure_dev_pki(settings)
        parts = load_parts(settings)
        registry = CollectorRegistry()
        broker = build_broker(parts, registry)
        await broker.start()
        portal = Portal(
            amqp_url,
            settings.portal_kennung,
            party_signer(settings, settings.portal_kennung),
            parts.verifier(),
        )
        await portal.start()
        try:
            yield WebhookWorld(settings, registry, broker, portal, receiver, secret)
        finally:
            await portal.close()
            await broker.stop()


@pytest.fixture
def receiver(world: WebhookWorld) -> Iterator[Receiver]:
    """The endpoint, answering 200 and with an empty record at the start of each test."""
    world.receiver.status = 200
    world.receiver.status_of.clear()
    world.receiver.pushes.clear()
    yield world.receiver
    world.receiver.status = 200
    world.receiver.status_of.clear()


# specifications


async def test_a_push_carries_standard_webhooks_headers_that_verify(
    world: WebhookWorld, receiver: Receiver
) -> None:
    uuid = await world.submit()

    await world.wait_receipt(uuid, ReceiptKind.DELIVERED)

    (push,) = [p for p in receiver.pushes if p.headers["webhook-id"] == uuid]
    Webhook(world.secret).verify(push.body, push.headers, json_parse=False)
    assert push.headers["content-type"] == "application/xml"
    assert b"Signature" in push.body  # the author's signed bytes, signature included


async def test_a_tampered_push_does_not_verify(world: WebhookWorld, receiver: Receiver) -> None:
    uuid = await world.submit()
    await world.wait_receipt(uuid, ReceiptKind.DELIVERED)
    (push,) = [p for p in receiver.pushes if p.headers["webhook-id"] == uuid]

    with pytest.raises(Exception, match="No matching signature"):
        Webhook(world.secret).verify(push.body + b" ", push.headers, json_parse=False)


async def test_the_broker_signs_the_delivered_receipt_naming_the_agency(
    world: WebhookWorld, receiver: Receiver
) -> None:
    uuid = await world.submit()

    receipt = await world.wait_receipt(uuid, ReceiptKind.DELIVERED)

    assert receipt.issuer == world.settings.broker_kennung
    assert receipt.recipients == (AGENCY,)
    assert world.portal.invalid_receipts == 0


async def test_every_message_arrives_once_after_the_endpoint_was_down_for_a_while(
    world: WebhookWorld, receiver: Receiver
) -> None:
    receiver.status = 503
    uuids = [await world.submit() for _ in range(20)]
    await eventually(
        lambda: all(receiver.attempts()[u] >= 2 for u in uuids),
        what="every message pushed and retried while the endpoint is down",
    )

    receiver.status = 200
    for uuid in uuids:
        await world.wait_receipt(uuid, ReceiptKind.DELIVERED)

    accepted = receiver.accepted_ids()
    assert {u: accepted[u] for u in uuids} == dict.fromkeys(uuids, 1)
    for push in receiver.pushes:
        Webhook(world.secret).verify(push.body, push.headers, json_parse=False)
    assert all(not world.receipts(u, ReceiptKind.FAILED) for u in uuids)


async def test_a_failing_endpoint_does_not_hold_up_messages_behind_it(
    world: WebhookWorld, receiver: Receiver
) -> None:
    receiver.status = 503  # the first message is refused until the test says otherwise
    first = await world.submit()
    receiver.status_of[first] = 503
    receiver.status = 200
    await eventually(lambda: receiver.attempts()[first], what="the first message pushed")

    behind = [await world.submit() for _ in range(3)]

    for uuid in behind:
        await world.wait_receipt(uuid, ReceiptKind.DELIVERED)
    assert not world.receipts(first, ReceiptKind.DELIVERED)
    del receiver.status_of[first]
    await world.wait_receipt(first, ReceiptKind.DELIVERED)
    assert receiver.accepted_ids()[first] == 1


async def test_a_message_is_failed_and_parked_when_the_schedule_is_exhausted(
    world: WebhookWorld, receiver: Receiver
) -> None:
    dead = f"agency.{AGENCY}.inbox.dead"
    parked_before = await world.queue_depth(dead)
    receiver.status = 500

    uuid = await world.submit()
    receipt = await world.wait_receipt(uuid, ReceiptKind.FAILED)

    attempts = [p for p in receiver.pushes if p.headers["webhook-id"] == uuid]
    assert len(attempts) == len(SCHEDULE) + 1
    assert receipt.reason is DeliveryFailure.UNDELIVERABLE
    assert receipt.recipients == (AGENCY,)
    assert receipt.issuer == world.settings.broker_kennung
    assert await world.queue_depth(dead) == parked_before + 1
    assert not world.receipts(uuid, ReceiptKind.DELIVERED)


async def test_410_gone_disables_the_endpoint_and_keeps_its_messages_queued(
    world: WebhookWorld, receiver: Receiver
) -> None:
    inbox = f"agency.{AGENCY}.inbox"
    receiver.status = 410
    uuids = [await world.submit() for _ in range(3)]
    await eventually(lambda: AGENCY in world.deliverer.disabled, what="the endpoint disabled")
    # Disabled, the inbox has no consumer and every copy waits in it: nothing is lost.
    await eventually(
        lambda: world.queue_state(inbox),
        until=lambda state: state == (len(uuids), 0),
        what=f"{len(uuids)} copies and no consumer on {inbox}",
    )
    pushes_while_disabled = len(receiver.pushes)

    # A message accepted now reaches the inbox and stays there: nothing more is pushed.
    later = await world.submit()
    await world.wait_receipt(later, ReceiptKind.ACCEPTED)
    await eventually(
        lambda: world.queue_depth(inbox),
        until=lambda depth: depth == len(uuids) + 1,
        what=f"the later copy in {inbox}",
    )
    assert len(receiver.pushes) == pushes_while_disabled
    gauge = world.registry.get_sample_value("xbroker_webhook_endpoint_disabled", {"agency": AGENCY})
    assert gauge == 1.0
    assert all(not world.receipts(u, ReceiptKind.FAILED) for u in [*uuids, later])

    receiver.status = 200
    await world.deliverer.enable(AGENCY)
    for uuid in [*uuids, later]:
        await world.wait_receipt(uuid, ReceiptKind.DELIVERED)
    assert (
        world.registry.get_sample_value("xbroker_webhook_endpoint_disabled", {"agency": AGENCY})
        == 0.0
    )
