"""The HTTP API, served by uvicorn beside the example world on a real RabbitMQ."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import httpx
import pytest

from broker.app import Parts, open_records
from broker.errors import ConfigurationError, Reason
from broker.http_api import ApiLimits, hash_token, start_api
from broker.stores.journal import EventKind
from broker.stores.sqlite import SqliteStatusStore
from monitoring.labels import ReceiptKind
from tests.http_api_support import LIMIT, TOKENS, Api, api_app, as_caller, serving_api
from tests.polling import eventually

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 30.0
PORTAL = as_caller("osi:hh-portal")


@pytest.fixture(scope="module")
async def api(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with serving_api(amqp_url, tmp_path_factory.mktemp("http")) as running:
        yield running


async def test_a_submission_is_answered_202_with_its_uuid_and_location(api: Api) -> None:
    signed = api.world.portal_signer.sign(api.world.fresh("anmeldung-hamburg.xml"))

    response = await api.client.post("/v1/messages", content=signed, headers=PORTAL)

    uuid = response.json()["uuid"]
    assert response.status_code == 202
    assert response.headers["location"] == f"/v1/messages/{uuid}"
    await api.world.portal.wait_final(uuid, TIMEOUT)


async def test_http_and_amqp_submissions_get_the_same_receipts(api: Api) -> None:
    world = api.world
    over_http = world.portal_signer.sign(world.fresh("anmeldung-hamburg.xml"))
    http_uuid = (await api.client.post("/v1/messages", content=over_http, headers=PORTAL)).json()[
        "uuid"
    ]
    amqp_uuid = await world.portal.submit(world.fresh("anmeldung-hamburg.xml"))

    by_http = await world.portal.wait_final(http_uuid, TIMEOUT)
    by_amqp = await world.portal.wait_final(amqp_uuid, TIMEOUT)

    def shape(receipts: list) -> list[tuple[ReceiptKind, str, tuple[str, ...]]]:  # type: ignore[type-arg]
        return [(r.kind, r.issuer, r.recipients) for r in receipts]

    assert shape(by_http.receipts) == shape(by_amqp.receipts)
    assert [r.kind for r in by_http.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert world.receivers_of(http_uuid) == ["psw:02000000"]


async def test_a_rejected_http_submission_gets_its_rejection_receipt(api: Api) -> None:
    world = api.world
    root = world.fresh("invalid-anmeldung-missing-birthdate.xml")

    response = await api.client.post(
        "/v1/messages", content=world.portal_signer.sign(root), headers=PORTAL
    )
    state = await world.portal.wait_final(response.json()["uuid"], TIMEOUT)

    assert [(r.kind, r.reason) for r in state.receipts] == [
        (ReceiptKind.REJECTED, Reason.SCHEMA_INVALID)
    ]


async def test_a_nachrichten_uuid_too_long_for_amqp_is_rejected_under_an_assigned_one(
    api: Api,
) -> None:
    world = api.world
    root = world.fresh("anmeldung-hamburg.xml")
    for element in root.iter("{*}nachrichtenUUID"):
        element.text = "x" * 300

    response = await api.client.post(
        "/v1/messages", content=world.portal_signer.sign(root), headers=PORTAL
    )
    assert response.status_code == 202, response.text
    uuid = response.json()["uuid"]
    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert len(uuid) == 36
    assert [(r.kind, r.reason) for r in state.receipts] == [
        (ReceiptKind.REJECTED, Reason.HEADER_INVALID)
    ]


async def test_the_same_bytes_again_get_the_same_answer_and_are_delivered_once(api: Api) -> None:
    world = api.world
    signed = world.portal_signer.sign(world.fresh("gewerbe-anmeldung.xml"))

    first = await api.client.post("/v1/messages", content=signed, headers=PORTAL)
    again = await api.client.post("/v1/messages", content=signed, headers=PORTAL)
    uuid = first.json()["uuid"]
    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert (again.status_code, again.json(), again.headers["location"]) == (
        first.status_code,
        first.json(),
        first.headers["location"],
    )
    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert world.receivers_of(uuid) == ["gew:02000000"]


async def test_other_bytes_under_a_used_uuid_are_refused_with_409(api: Api) -> None:
    world = api.world
    root = world.fresh("anmeldung-hamburg.xml")
    first = world.portal_signer.sign(root)
    await api.client.post("/v1/messages", content=first, headers=PORTAL)
    other = first.replace(b"Petersen", b"Peterson")

    response = await api.client.post("/v1/messages", content=other, headers=PORTAL)

    assert response.status_code == 409


async def test_a_declared_length_above_the_limit_is_refused_with_413(api: Api) -> None:
    body = b"<x>" + b"a" * LIMIT + b"</x>"

    response = await api.client.post("/v1/messages", content=body, headers=PORTAL)

    assert response.status_code == 413


async def test_a_streamed_body_above_the_limit_is_refused_with_413(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(LIMIT // 1024 + 2):
            yield b"a" * 1024

    response = await api.client.post("/v1/messages", content=chunks(), headers=PORTAL)

    assert response.status_code == 413
    assert "content-length" not in {k.lower() for k in response.request.headers}


async def test_a_caller_without_credentials_is_refused_with_401(api: Api) -> None:
    response = await api.client.post("/v1/messages", content=b"<x/>")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_an_unknown_token_is_refused_with_401(api: Api) -> None:
    response = await api.client.get(
        "/v1/messages/x", headers={"authorization": "Bearer not-a-token"}
    )

    assert response.status_code == 401


async def test_a_body_that_is_not_xml_is_refused_with_400(api: Api) -> None:
    response = await api.client.post("/v1/messages", content=b"not xml", headers=PORTAL)

    assert response.status_code == 400


async def _delivered_over_http(api: Api) -> str:
    signed = api.world.portal_signer.sign(api.world.fresh("anmeldung-hamburg.xml"))
    uuid = str(
        (await api.client.post("/v1/messages", content=signed, headers=PORTAL)).json()["uuid"]
    )
    await api.world.portal.wait_final(uuid, TIMEOUT)
    return uuid


async def test_the_author_reads_the_whole_laufzettel(api: Api) -> None:
    uuid = await _delivered_over_http(api)

    # The worker forwards the agency's delivered receipt before it records the event
    # (the receipt is confirmed first, then journalled): the Laufzettel follows shortly.
    async def read() -> httpx.Response:
        return await api.client.get(f"/v1/messages/{uuid}", headers=PORTAL)

    def delivered(r: httpx.Response) -> bool:
        return r.status_code == 200 and r.json()["state"] == "delivered"

    response = await eventually(
        read,
        what="the Laufzettel to show the copy delivered",
        until=delivered,
    )

    body = response.json()
    kinds = [e["kind"] for e in body["events"]]
    assert response.status_code == 200
    assert (body["state"], body["author"], body["recipients"]) == (
        "delivered",
        "osi:hh-portal",
        ["psw:02000000"],
    )
    assert kinds[0] == "received" and {"accepted", "queued", "delivered"} <= set(kinds)


async def test_a_submission_over_http_is_received_once(api: Api) -> None:
    uuid = await _delivered_over_http(api)
    await api.world.settled(uuid)

    store = SqliteStatusStore(api.world.settings.status_path)
    events = (await store.timeline(uuid)).events
    await store.close()

    received = [e for e in events if e.kind is EventKind.RECEIVED]
    assert [(e.author, e.digest is not None) for e in received] == [("osi:hh-portal", True)]
    assert events[0] is received[0]


async def test_a_recipient_reads_the_laufzettel_of_its_copy(api: Api) -> None:
    uuid = await _delivered_over_http(api)

    response = await api.client.get(f"/v1/messages/{uuid}", headers=as_caller("psw:02000000"))

    assert response.status_code == 200
    assert {e.get("agency") for e in response.json()["events"]} <= {None, "psw:02000000"}


async def test_an_agency_that_is_neither_author_nor_recipient_gets_404(api: Api) -> None:
    uuid = await _delivered_over_http(api)

    response = await api.client.get(f"/v1/messages/{uuid}", headers=as_caller("gew:02000000"))

    assert response.status_code == 404


async def test_openapi_describes_both_routes(api: Api) -> None:
    schema = (await api.client.get("/openapi.json")).json()
    docs = await api.client.get("/docs")

    assert {"/v1/messages", "/v1/messages/{uuid}"} <= set(schema["paths"])
    assert "application/xml" in schema["paths"]["/v1/messages"]["post"]["requestBody"]["content"]
    assert docs.status_code == 200


@pytest.fixture
async def full_queue(amqp_url: str) -> AsyncIterator[str]:
    """A queue holding three messages, standing in for a backed-up ingress queue."""
    name = f"test.backlog.{secrets.token_hex(4)}"
    connection = await aio_pika.connect(amqp_url)
    channel = await connection.channel(publisher_confirms=True)
    await channel.declare_queue(name, auto_delete=False)
    for _ in range(3):
        await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=name)
    yield name
    await channel.queue_delete(name)
    await connection.close()


async def _post_against_backlog(api: Api, amqp_url: str, queue: str, limit: int) -> httpx.Response:
    limits = ApiLimits(max_body_bytes=LIMIT, queue_limit=limit, retry_after_seconds=7)
    async with api_app(api.world, amqp_url, limits=limits, depth_queue=queue) as app:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.post("/v1/messages", content=b"not xml", headers=PORTAL)


async def test_a_backed_up_ingress_queue_is_answered_503_with_retry_after(
    api: Api, amqp_url: str, full_queue: str
) -> None:
    response = await _post_against_backlog(api, amqp_url, full_queue, limit=2)

    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"


async def test_a_queue_within_its_limit_lets_submissions_through(
    api: Api, amqp_url: str, full_queue: str
) -> None:
    response = await _post_against_backlog(api, amqp_url, full_queue, limit=3)

    assert response.status_code == 400  # past the gate, refused only for not being XML


async def test_the_body_is_never_read_far_past_the_limit(api: Api, amqp_url: str) -> None:
    chunk = b"a" * 1024
    read = 0
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        nonlocal read
        read += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}  # never ends

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.encode(), v.encode()) for k, v in PORTAL.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    async with api_app(api.world, amqp_url) as app:
        await app(scope, receive, send)

    assert sent[0]["status"] == 413
    assert read <= LIMIT + len(chunk)


def _parts_with(api: Api, **settings: object) -> Parts:
    parts = api.world.parts
    return Parts(
        parts.settings.model_copy(update=settings), parts.catalog, parts.directory, parts.trust
    )


async def test_the_api_as_xbroker_run_serves_it_answers_with_a_configured_token(
    api: Api, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'[tokens]\n"{hash_token(TOKENS["osi:hh-portal"])}" = "osi:hh-portal"\n')
    parts = _parts_with(api, api_port=0, api_tokens_file=tokens)
    records = open_records(parts.settings)
    running = await start_api(parts, records)
    try:
        async with httpx.AsyncClient(base_url=running.url) as client:
            response = await client.get("/v1/messages/unknown", headers=PORTAL)
    finally:
        await running.stop()
        await records.close()

    assert response.status_code == 404


async def test_the_api_refuses_to_start_when_nobody_could_log_in(api: Api) -> None:
    parts = _parts_with(api, api_port=0)
    records = open_records(parts.settings)

    with pytest.raises(ConfigurationError, match="nobody could log in"):
        await start_api(parts, records)
    await records.close()
