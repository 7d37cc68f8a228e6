"""Specification of the broker's logs: JSON, one event per state change of a message,
with its UUID, type and agency, and never a byte of its payload.

The example world runs in-process with the logging `xbroker run` configures, writing to
a buffer; an accepted-and-delivered, a rejected and a duplicate message pass through it.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from broker.logs import configure_logging
from tests.polling import eventually
from tests.world import running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 30.0
# Content of examples/submissions/anmeldung-hamburg.xml outside its header: personal data.
PAYLOAD_VALUES = ("Petersen", "Lena", "1991-04-17", "Kiel")


@dataclass
class Captured:
    lines: list[str]
    accepted: str  # nachrichtenUUIDs
    rejected: str
    duplicate: str
    signature_value: str

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def events(self, name: str, uuid: str) -> list[dict[str, Any]]:
        return [e for e in self.entries() if e["event"] == name and e.get("uuid") == uuid]


@pytest.fixture(scope="module")
async def captured(
    amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Captured]:
    root_logger = logging.getLogger()
    saved = (root_logger.handlers[:], root_logger.level)
    buffer = io.StringIO()
    configure_logging("INFO", buffer)
    try:
        async with running_world(amqp_url, tmp_path_factory.mktemp("logs")) as world:
            signed = world.portal_signer.sign(world.fresh("anmeldung-hamburg.xml"))
            accepted = await world.portal.submit(signed, sign=False)
            await world.portal.wait_final(accepted, TIMEOUT)
            await world.settled(accepted)
            await world.portal.submit(signed, sign=False)  # the same message again
            invalid = world.portal_signer.sign(
                world.fresh("invalid-anmeldung-missing-birthdate.xml")
            )
            rejected = await world.portal.submit(invalid, sign=False)
            await world.portal.wait_final(rejected, TIMEOUT)
            await eventually(
                lambda: "message.duplicate" in buffer.getvalue(), what="the duplicate logged"
            )
    finally:
        root_logger.handlers[:], _ = saved
        root_logger.setLevel(saved[1])
    value = signed.split(b"SignatureValue>")[1].split(b"<")[0].decode().strip()
    yield Captured(buffer.getvalue().splitlines(), accepted, rejected, accepted, value[:40])


def test_every_log_line_is_one_json_object_with_time_level_and_event(captured: Captured) -> None:
    assert captured.lines
    for entry in captured.entries():
        assert {"ts", "level", "logger", "event"} <= set(entry)


def test_an_accepted_message_is_logged_once_with_uuid_type_and_recipient(
    captured: Captured,
) -> None:
    (entry,) = captured.events("message.accepted", captured.accepted)
    assert entry["nachrichtentyp"] == "meldung.anmeldung.0200"
    assert entry["recipients"] == ["psw:02000000"]


def test_a_delivered_message_is_logged_once_with_uuid_and_agency(captured: Captured) -> None:
    (entry,) = captured.events("message.delivered", captured.accepted)
    assert entry["agency"] == "psw:02000000"


def test_a_rejected_message_is_logged_once_with_uuid_type_and_reason(captured: Captured) -> None:
    (entry,) = captured.events("message.rejected", captured.rejected)
    assert entry["nachrichtentyp"] == "meldung.anmeldung.0200"
    assert entry["reason"] == "schema-invalid"


def test_a_duplicate_is_logged_once_and_not_as_accepted_again(captured: Captured) -> None:
    assert len(captured.events("message.duplicate", captured.duplicate)) == 1
    assert len(captured.events("message.accepted", captured.duplicate)) == 1


@pytest.mark.parametrize(
    "event",
    [
        "message.accepted",
        "message.rejected",
        "message.delivered",
        "message.duplicate",
    ],
)
def test_every_message_event_names_the_message_type(captured: Captured, event: str) -> None:
    entries = [e for e in captured.entries() if e["event"] == event]
    assert entries
    assert all(e.get("nachrichtentyp") for e in entries)


def test_no_payload_reaches_the_log(captured: Captured) -> None:
    text = "\n".join(captured.lines)
    for value in PAYLOAD_VALUES:
        assert value not in text
    assert captured.signature_value not in text
    assert "<" not in text, "no XML at all"
