"""Copies that cannot be delivered are never lost: the author gets a `failed` receipt."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from broker.errors import DeliveryFailure
from monitoring.labels import ReceiptKind
from tests.polling import eventually
from tests.world import World, metrics_url_of, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 30.0
NORDERSTEDT = "psw:01060063"


@pytest.fixture(scope="module")
async def world(
    amqp_url: str, rabbitmq: object, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[World]:
    # Norderstedt's office never fetches its mail here, and copies expire after 1 s.
    async with running_world(
        amqp_url,
        tmp_path_factory.mktemp("state"),
        rabbitmq_metrics_url=metrics_url_of(rabbitmq),
        agencies={"psw:02000000", "gew:02000000"},
        expire_after_days=1 / 86400,
    ) as running:
        yield running


async def test_unfetched_copy_expires_with_a_failed_receipt(world: World) -> None:
    uuid = await world.portal.submit(world.fresh("anmeldung-norderstedt.xml"))

    state = await world.portal.wait_final(uuid, TIMEOUT)

    kinds = [r.kind for r in state.receipts]
    assert kinds == [ReceiptKind.ACCEPTED, ReceiptKind.FAILED]
    failed = state.receipts[1]
    assert (failed.reason, failed.recipients) == (DeliveryFailure.EXPIRED, (NORDERSTEDT,))
    assert failed.issuer == "xbr:broker"


async def test_copy_the_agency_keeps_failing_on_is_dead_lettered_with_a_failed_receipt(
    world: World,
) -> None:
    root = world.fresh("anmeldung-hamburg.xml")
    world.refuse.add(world.uuid_of(root))

    uuid = await world.portal.submit(root)
    state = await world.portal.wait_final(uuid, TIMEOUT)

    failed = state.receipts[-1]
    assert (failed.kind, failed.reason) == (ReceiptKind.FAILED, DeliveryFailure.UNDELIVERABLE)
    assert "every delivery attempt" in str(failed.detail)
    assert world.receivers_of(uuid) == []


async def test_dead_lettered_copy_stays_parked_and_shows_in_the_gauge(world: World) -> None:
    def dead() -> float:
        value = world.registry.get_sample_value(
            "xbroker_agency_dead_letter_messages", {"agency": "psw:02000000"}
        )
        return value or 0.0

    before = dead()
    root = world.fresh("anmeldung-hamburg.xml")
    world.refuse.add(world.uuid_of(root))
    await world.portal.wait_final(await world.portal.submit(root), TIMEOUT)

    await eventually(lambda: dead() >= before + 1, what="one more dead letter in the gauge")
