"""What the HTTP API tells one caller about another's messages: nothing.

A nachrichtenUUID is its author's own. The same UUID from another caller is that
caller's message, answered exactly as a fresh UUID is, and the author's own message
under it is still accepted; a recipient reads only its own copy's events; a body that
is not XML by its Content-Type is refused before it is read; a client that goes away
mid-body leaves a log event, not a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from collections.abc import AsyncIterator

import pytest

from broker.stores.journal import EventKind, StatusEvent
from broker.stores.sqlite import SqliteStatusStore
from monitoring.labels import ReceiptKind
from tests.http_api_support import Api, as_caller, serving_api
from tests.polling import TIMEOUT, eventually

pytestmark = pytest.mark.rabbitmq

PORTAL = as_caller("osi:hh-portal")
SQUATTER = as_caller("psw:02000000")


@pytest.fixture(scope="module")
async def api(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    async with serving_api(amqp_url, tmp_path_factory.mktemp("claims")) as running:
        yield running


def _junk(uuid: str) -> bytes:
    """Not a signed message, but with a nachrichtenUUID for the API to read."""
    return f"<junk><nachrichtenUUID>{uuid}</nachrichtenUUID></junk>".encode()


def _shape(response: object) -> tuple[int, list[str], list[str]]:
    status = response.status_code  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    return status, sorted(body), sorted(k.lower() for k in response.headers)  # type: ignore[attr-defined]


async def test_another_authors_uuid_is_answered_as_a_fresh_uuid(api: Api) -> None:
    world = api.world
    root = world.fresh("anmeldung-hamburg.xml")
    taken = world.uuid_of(root)
    await api.client.post("/v1/messages", content=world.portal_signer.sign(root), headers=PORTAL)

    on_taken = await api.client.post("/v1/messages", content=_junk(taken), headers=SQUATTER)
    on_fresh = await api.client.post(
        "/v1/messages", content=_junk(str(uuidlib.uuid4())), headers=SQUATTER
    )

    assert on_taken.status_code == 202
    assert _shape(on_taken) == _shape(on_fresh)
    await world.portal.wait_final(taken, TIMEOUT)


async def test_a_uuid_taken_first_by_another_caller_is_still_accepted_from_its_author(
    api: Api,
) -> None:
    world = api.world
    root = world.fresh("anmeldung-hamburg.xml")
    uuid = world.uuid_of(root)
    squatted = await api.client.post("/v1/messages", content=_junk(uuid), headers=SQUATTER)

    genuine = await api.client.post(
        "/v1/messages", content=world.portal_signer.sign(root), headers=PORTAL
    )
    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert (squatted.status_code, genuine.status_code) == (202, 202)
    assert [r.kind for r in state.receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.DELIVERED]
    assert world.receivers_of(uuid) == ["psw:02000000"]


async def test_the_author_does_not_see_the_events_of_another_callers_message_under_its_uuid(
    api: Api,
) -> None:
    world = api.world
    root = world.fresh("anmeldung-hamburg.xml")
    uuid = world.uuid_of(root)
    await api.client.post("/v1/messages", content=_junk(uuid), headers=SQUATTER)
    await api.client.post("/v1/messages", content=world.portal_signer.sign(root), headers=PORTAL)
    await world.portal.wait_final(uuid, TIMEOUT)
    await world.settled(uuid)

    events = (await api.client.get(f"/v1/messages/{uuid}", headers=PORTAL)).json()["events"]

    assert {e.get("author") for e in events} == {"osi:hh-portal"}
    assert "rejected" not in {e["kind"] for e in events}


async def test_a_recipient_of_a_fanned_out_message_sees_only_itself_as_recipient(
    api: Api,
) -> None:
    uuid = str(uuidlib.uuid4())
    store = SqliteStatusStore(api.world.settings.status_path)
    try:
        await store.record(
            StatusEvent(
                uuid,
                EventKind.ACCEPTED,
                author="osi:hh-portal",
                recipients=("psw:02000000", "psw:01060063"),
            )
        )
    finally:
        await store.close()

    seen = (await api.client.get(f"/v1/messages/{uuid}", headers=SQUATTER)).json()

    assert seen["recipients"] == ["psw:02000000"]
    assert [e.get("recipients") for e in seen["events"]] == [["psw:02000000"]]


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/json"])
async def test_a_body_that_is_not_xml_by_its_content_type_is_refused_with_415(
    api: Api, content_type: str | None
) -> None:
    headers = {"authorization": PORTAL["authorization"]}
    if content_type is not None:
        headers["content-type"] = content_type

    response = await api.client.post("/v1/messages", content=b"<x/>", headers=headers)

    assert response.status_code == 415


@pytest.mark.parametrize(
    "content_type", ["application/xml; charset=utf-8", "text/xml", "application/vnd.xoev+xml"]
)
async def test_xml_content_types_pass(api: Api, content_type: str) -> None:
    headers = {"authorization": PORTAL["authorization"], "content-type": content_type}

    response = await api.client.post("/v1/messages", content=b"not xml", headers=headers)

    assert response.status_code == 400  # past the gate, refused only for not being XML


async def test_a_client_gone_mid_body_leaves_a_log_event_and_no_traceback(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    _, writer = await asyncio.open_connection(api.server.host, api.server.port)
    writer.write(
        b"POST /v1/messages HTTP/1.1\r\nHost: api\r\nContent-Type: application/xml\r\n"
        + f"Authorization: {PORTAL['authorization']}\r\n".encode()
        + b"Content-Length: 1000\r\n\r\n<partial"
    )
    await writer.drain()
    writer.close()  # the body's first bytes sent, the rest never will be
    await writer.wait_closed()

    await eventually(lambda: "http.client_gone" in caplog.text, what="the client's leaving logged")

    assert "Traceback" not in caplog.text
    assert "Exception in ASGI application" not in caplog.text
