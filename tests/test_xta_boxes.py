"""The upkeep of XTA message boxes on the real node: copies nobody closes expire, closed
copies leave RabbitMQ.

A world whose copies expire after a few seconds (``expire_after_days``), whose boxes keep
what they hold a few seconds longer, and whose upkeep runs twice a second. Norderstedt's
registration office (an AMQP agency) does not fetch here, so its copies expire the AMQP
way, for comparison.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest

from broker.errors import DeliveryFailure
from broker.stores.journal import EventKind
from broker.stores.xta import BoxEntry
from broker.worker.failures import not_fetched
from broker.xta.metadata import xta_message_id
from broker.xta.stream import FIRST, read_entry, stream_offset
from monitoring.labels import ReceiptKind
from tests.polling import eventually
from tests.xta_support import (
    AGENCY,
    TIMEOUT,
    XtaWorld,
    fault_of,
    folder,
    listed,
    running_xta_world,
)

pytestmark = [pytest.mark.rabbitmq, pytest.mark.tool("xta-tool")]

NORDERSTEDT = "psw:01060063"
EXPIRE_SECONDS = 6.0
KEEP_SECONDS = EXPIRE_SECONDS + 4.0  # the boxes' x-max-age
ROLL_SECONDS = 1.0


@pytest.fixture(scope="module")
async def xta(
    module_vhost_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[XtaWorld]:
    async with running_xta_world(
        module_vhost_url,
        tmp_path_factory.mktemp("xta-boxes"),
        agencies={"psw:02000000", "gew:02000000"},
        expire_after_days=EXPIRE_SECONDS / 86400,
        xta_box_max_age_days=KEEP_SECONDS / 86400,
        xta_box_check_seconds=0.5,
        xta_box_roll_seconds=ROLL_SECONDS,
        xta_box_segment_bytes=64 * 1024,
    ) as world:
        yield world


async def _indexed(xta: XtaWorld, uuid: str) -> BoxEntry:
    entry = await eventually(
        lambda: xta.xta.store.entry_of(AGENCY, uuid), what=f"{uuid} indexed", interval=0.1
    )
    assert entry is not None
    return entry


async def test_an_unclosed_copy_expires_with_the_failed_receipt_an_amqp_copy_gets_once(
    xta: XtaWorld,
) -> None:
    portal = xta.world.portal
    async with xta.second_endpoint() as second:  # two processes expiring the same box
        in_box = await portal.submit(xta.world.fresh_standard_sample("xbau/1.0", "bau.antrag.0200"))
        in_inbox = await portal.submit(xta.world.fresh("anmeldung-norderstedt.xml"))
        await portal.wait_final(in_box, TIMEOUT)
        await portal.wait_final(in_inbox, TIMEOUT)
        # Let both endpoints go round twice more, then flush the receipt queue with a
        # message of their own: anything either published is consumed before its answer.
        rounds = (xta.xta.boxes.upkeep_rounds, second.xta.boxes.upkeep_rounds)
        await eventually(
            lambda: (
                xta.xta.boxes.upkeep_rounds >= rounds[0] + 2
                and second.xta.boxes.upkeep_rounds >= rounds[1] + 2
            ),
            what="two more upkeep rounds at both endpoints",
            interval=0.1,
        )
    marker = await portal.submit(xta.world.fresh("anmeldung-hamburg.xml"))
    await portal.wait_final(marker, TIMEOUT)

    box_receipts = portal.state(in_box).receipts
    (amqp_failed,) = [r for r in portal.state(in_inbox).receipts if r.kind is ReceiptKind.FAILED]
    assert [r.kind for r in box_receipts] == [ReceiptKind.ACCEPTED, ReceiptKind.FAILED]
    box_failed = box_receipts[1]
    days = EXPIRE_SECONDS / 86400
    assert (box_failed.reason, box_failed.recipients, box_failed.detail) == (
        DeliveryFailure.EXPIRED,
        (AGENCY,),
        not_fetched(AGENCY, days),
    )
    assert (amqp_failed.reason, amqp_failed.recipients, amqp_failed.detail) == (
        DeliveryFailure.EXPIRED,
        (NORDERSTEDT,),
        not_fetched(NORDERSTEDT, days),
    )
    assert (box_failed.issuer, box_failed.author) == (amqp_failed.issuer, amqp_failed.author)
    events = (await xta.records.status.timeline(in_box)).events
    assert [(e.kind, e.agency, e.reason) for e in events if e.kind is EventKind.FAILED] == [
        (EventKind.FAILED, AGENCY, DeliveryFailure.EXPIRED.value)
    ]


async def test_an_expired_copy_is_no_longer_listed_fetched_or_closed(
    xta: XtaWorld, tmp_path: Path
) -> None:
    uuid = await xta.world.portal.submit(
        xta.world.fresh_standard_sample("xbau/1.0", "bau.antrag.0200")
    )
    message_id = xta_message_id(uuid)
    await xta.world.portal.wait_final(uuid, TIMEOUT)  # failed: expired
    agency = xta.client(AGENCY)

    fetched = await agency.run("get", message_id, str(folder(tmp_path / "in")))
    closed = await agency.run("close", message_id)

    assert message_id not in await listed(agency)
    assert fault_of(fetched)["tag"].endswith("InvalidMessageIDException")
    assert "expired" in fault_of(closed)["reason"]


async def test_a_closed_copy_leaves_rabbitmq_within_its_bound_in_a_quiet_box(
    xta: XtaWorld,
) -> None:
    uuid = await xta.world.portal.submit(
        xta.world.fresh_standard_sample("xbau/1.0", "bau.antrag.0200")
    )
    entry = await _indexed(xta, uuid)
    await xta.xta.boxes.close(AGENCY, entry.message_id)
    connection = await aio_pika.connect(xta.world.settings.amqp_url)
    try:
        # Nothing else arrives in the box from here on: only the upkeep's paddings can
        # make RabbitMQ 3.10 look at the stream's retention at all.
        bound = KEEP_SECONDS + 2 * ROLL_SECONDS

        async def first_offset() -> int | None:
            return stream_offset(await read_entry(connection, AGENCY, FIRST))

        first = await eventually(
            first_offset,
            until=lambda first: first is None or first > entry.offset,
            what="the stream's first offset past the closed copy",
            timeout=bound + TIMEOUT,
            interval=0.5,
        )
        at_offset = await read_entry(connection, AGENCY, entry.offset)
    finally:
        await connection.close()

    assert first is not None and first > entry.offset
    assert at_offset.message_id != uuid  # the copy's bytes are gone
