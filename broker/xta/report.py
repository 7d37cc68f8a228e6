"""A message's Laufzettel as XTA's TransportReport: a status and error, warning and info lists.

Status, as XTA 2's TransportReport states it: 0 while the message is on its way
(accepted, waiting in a box), 1 when every copy the caller may see is delivered (closed
by its agency), 2 when it succeeded with a warning (a duplicate, answered without a
second delivery), 3 when it failed (rejected by the broker's checks, or a copy failed).
Each event of the Laufzettel becomes a record: rejections and failures errors (their
reason code and name), duplicates warnings, everything else info.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from enum import IntEnum

from lxml import etree

from broker.stores.journal import EventKind, StatusEvent
from broker.stores.status import Laufzettel
from broker.xta.metadata import MessageMetaData
from broker.xta.soap import XTA

__all__ = ["TransportStatus", "status_of", "transport_report"]

_X = f"{{{XTA}}}"
REASON_LIST = "urn:xbroker:codeliste:ablehnungsgrund"
EVENT_LIST = "urn:xbroker:codeliste:ereignis"


class TransportStatus(IntEnum):
    OPEN = 0
    DELIVERED = 1
    WARNING = 2
    ERROR = 3


def status_of(laufzettel: Laufzettel, awaited: Iterable[str]) -> TransportStatus:
    """The report's status; ``awaited``: the agencies whose delivery completes it."""
    kinds = {e.kind for e in laufzettel.events}
    if kinds & {EventKind.REJECTED, EventKind.FAILED}:
        return TransportStatus.ERROR
    if EventKind.DUPLICATE in kinds:
        return TransportStatus.WARNING
    delivered = {e.agency for e in laufzettel.events if e.kind is EventKind.DELIVERED}
    awaited = set(awaited)
    if awaited and awaited <= delivered:
        return TransportStatus.DELIVERED
    return TransportStatus.OPEN


def transport_report(
    metadata: MessageMetaData,
    laufzettel: Laufzettel,
    awaited: Iterable[str],
    server: str,
) -> etree._Element:
    report = etree.Element(f"{_X}TransportReport", nsmap={"xta": XTA})
    metadata.write(report)
    etree.SubElement(report, f"{_X}ReportTime").text = datetime.now(UTC).isoformat()
    etree.SubElement(report, f"{_X}XTAServerIdentity").text = server
    status = etree.SubElement(report, f"{_X}MessageStatus")
    etree.SubElement(status, f"{_X}Status").text = str(int(status_of(laufzettel, awaited)))
    errors = [e for e in laufzettel.events if e.kind in (EventKind.REJECTED, EventKind.FAILED)]
    warnings = [e for e in laufzettel.events if e.kind is EventKind.DUPLICATE]
    infos = [e for e in laufzettel.events if e not in errors and e not in warnings]
    for tag, item, events in (
        ("ErrorList", "Error", errors),
        ("WarnList", "Warning", warnings),
        ("InfoList", "Info", infos),
    ):
        if events:
            listing = etree.SubElement(status, f"{_X}{tag}")
            for e in events:
                _record(etree.SubElement(listing, f"{_X}{item}"), e)
    return report


def _record(element: etree._Element, e: StatusEvent) -> None:
    etree.SubElement(element, f"{_X}Timestamp").text = e.at.astimezone(UTC).isoformat()
    code = etree.SubElement(element, f"{_X}Code")
    if e.reason:
        code.set("listURI", REASON_LIST)
        etree.SubElement(code, "code").text = e.reason
    else:
        code.set("listURI", EVENT_LIST)
        etree.SubElement(code, "code").text = e.kind.value
    code.set("listVersionID", "1")
    etree.SubElement(element, f"{_X}Reason").text = _describe(e)


def _describe(e: StatusEvent) -> str:
    if e.kind is EventKind.REJECTED:
        return f"rejected by the broker: {e.reason}"
    if e.kind is EventKind.FAILED:
        return f"the copy for {e.agency} failed: {e.reason}"
    if e.kind is EventKind.DUPLICATE:
        return "a duplicate of a message received before; not delivered again"
    if e.kind is EventKind.ACCEPTED:
        return f"accepted for {', '.join(e.recipients)}"
    if e.kind is EventKind.QUEUED:
        return f"waiting for {e.agency}"
    if e.kind is EventKind.DELIVERED:
        return f"delivered to {e.agency}"
    return "received by the broker"
