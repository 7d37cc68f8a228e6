"""The portal SDK keeps its submissions' receipts until they are final, and then only
those of the last ``keep_final`` final submissions: its memory does not grow with every
message it ever sent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from broker.receipts.document import Receipt
from broker.sdk.portal import Portal
from monitoring.labels import ReceiptKind

AGENCY = "psw:02000000"


def receipt(kind: ReceiptKind, uuid: str, issuer: str = "xbroker:broker") -> Receipt:
    recipients = (AGENCY,) if kind is ReceiptKind.ACCEPTED else ()
    return Receipt(kind, uuid, issuer, datetime.now(UTC), recipients=recipients)


def test_only_the_last_final_submissions_are_kept() -> None:
    unused: Any = None  # nothing is signed, verified or published here
    portal = Portal("amqp://127.0.0.1:1/", "psw:portal", unused, unused, keep_final=2)
    portal._record(receipt(ReceiptKind.ACCEPTED, "open"))  # waits for its delivered receipt
    for uuid in ("r1", "r2", "r3"):
        assert portal._record(receipt(ReceiptKind.REJECTED, uuid))

    assert portal.state("r1").receipts == []  # the oldest final one, forgotten
    assert [r.kind for r in portal.state("r3").receipts] == [ReceiptKind.REJECTED]
    assert portal.state("r2").final and portal.state("r3").final
    assert portal.state("open").recipients == (AGENCY,)  # not final: kept, however old

    assert portal._record(receipt(ReceiptKind.DELIVERED, "open", issuer=AGENCY))
    assert not portal._record(receipt(ReceiptKind.DELIVERED, "open", issuer=AGENCY))  # again

    assert portal.state("open").final
    assert portal.state("r2").receipts == []  # the oldest final one now
    assert portal.state("r3").final
