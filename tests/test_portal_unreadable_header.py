"""The portal SDK publishes a message whose header cannot be read, and learns why.

The SDK tracks a submission by the identity the message states. Where the header does
not state a usable one (missing, empty, not a UUID, too long to travel as an AMQP
message id) or cannot be read at all, the message is still published, under an identity
the SDK assigns, and the broker's signed rejection comes back to that identity.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from lxml import etree

from broker.errors import Reason
from monitoring.labels import ReceiptKind
from signing import XmlError
from tests.world import World, running_world

pytestmark = pytest.mark.rabbitmq

TIMEOUT = 60.0


@pytest.fixture(scope="module")
async def world(amqp_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    async with running_world(amqp_url, tmp_path_factory.mktemp("unreadable")) as running:
        yield running


def _elements(root: etree._Element, name: str) -> list[etree._Element]:
    return [e for e in root.iter(etree.Element) if etree.QName(e).localname == name]


def _removed(name: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        for element in _elements(root, name):
            parent = element.getparent()
            assert parent is not None
            parent.remove(element)

    return change


def _text(name: str, text: str) -> Callable[[etree._Element], None]:
    def change(root: etree._Element) -> None:
        for element in _elements(root, name):
            element.text = text

    return change


CHANGES = {
    "no nachrichtenUUID": _removed("nachrichtenUUID"),
    "an empty nachrichtenUUID": _text("nachrichtenUUID", ""),
    "a nachrichtenUUID that is no UUID": _text("nachrichtenUUID", "kaputt"),
    "a nachrichtenUUID longer than an AMQP message id": _text("nachrichtenUUID", "x" * 300),
    "a nachrichtenUUID of multi-byte characters": _text("nachrichtenUUID", "ü" * 200),
    "a creation time that is no time": _text("erstellungszeitpunkt", "gestern"),
    "no header at all": _removed("nachrichtenkopf.g2g"),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_message_with_an_unreadable_header_is_rejected_back_to_the_sdk(
    world: World, change: str
) -> None:
    root = world.fresh("anmeldung-hamburg.xml")
    CHANGES[change](root)

    uuid = await world.portal.submit(root)
    state = await world.portal.wait_final(uuid, TIMEOUT)

    assert len(uuid.encode()) <= 255
    [receipt] = state.receipts
    assert (receipt.kind, receipt.reason) == (ReceiptKind.REJECTED, Reason.HEADER_INVALID)
    assert receipt.detail


async def test_unsigned_bytes_that_are_no_xml_are_refused_before_publishing(
    world: World,
) -> None:
    with pytest.raises(XmlError):
        await world.portal.submit(b"<nachricht>", sign=False)
