"""MsgBoxPort: list, fetch and close the messages waiting in the caller's own box.

Every request concerns the box of the caller's TLS identity; a request whose Author
names another party is refused (PermissionDenied), and a MessageID that is not an open
copy of the caller's box is unknown (InvalidMessageID), whether or not it exists
elsewhere.
"""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from broker.errors import Fault, XtaFault
from broker.stores.xta import BoxEntry
from broker.xta.box import MessageBoxes
from broker.xta.call import Answer, Call
from broker.xta.metadata import MessageMetaData
from broker.xta.mtom import MimePart
from broker.xta.soap import OSCI, WSA, XOP, XTA, child, text_of

__all__ = ["CLOSE", "FETCH", "GET_NEXT", "STATUS_LIST", "MsgBoxPort"]

_ACTIONS = "http://www.osci.eu/ws/2008/05/transport/urn/messageTypes/"
STATUS_LIST = f"{_ACTIONS}MsgBoxStatusListRequest"
GET_NEXT = f"{_ACTIONS}MsgBoxGetNextRequest"
FETCH = f"{_ACTIONS}MsgBoxFetchRequest"
CLOSE = f"{_ACTIONS}MsgBoxCloseRequest"
_O = f"{{{OSCI}}}"
_X = f"{{{XTA}}}"


class MsgBoxPort:
    def __init__(self, boxes: MessageBoxes, max_list_items: int) -> None:
        self._boxes = boxes
        self._max_list_items = max_list_items

    def status_list(self, call: Call) -> Answer:
        """The oldest open copies, as many as ``maxListItems`` asks (and the server allows)."""
        request = call.payload(OSCI, "MsgBoxStatusListRequest")
        return self._page(call, request.get("maxListItems"), -1, STATUS_LIST)

    def get_next(self, call: Call) -> Answer:
        """The page after the one a status list's MsgBoxRequestID ended with."""
        request = call.payload(OSCI, "MsgBoxGetNextRequest")
        after = request.get("MsgBoxRequestID", "")
        if not after.lstrip("-").isdigit():
            raise XtaFault(Fault.PARAMETER_NOT_VALID, "MsgBoxRequestID is not one this box gave")
        return self._page(call, request.get("maxListItems"), int(after), GET_NEXT)

    def _page(self, call: Call, asked: str | None, after: int, action: str) -> Answer:
        kennung = call.own_box()
        limit = self._max_list_items
        if asked is not None:
            if not asked.strip().isdigit() or int(asked) < 1:
                raise XtaFault(Fault.PARAMETER_NOT_VALID, "maxListItems must be a positive number")
            limit = min(limit, int(asked))
        entries, pending = self._boxes.waiting(kennung, limit, after)
        last = entries[-1].offset if entries else after
        status_list = etree.Element(f"{_O}MsgStatusList", nsmap={"osci": OSCI})
        for entry in entries:
            MessageMetaData.from_json(entry.metadata).write(status_list)
        return Answer(
            f"{action.removesuffix('Request')}Response",
            header=[_response(str(last), pending, bool(entries))],
            body=[status_list],
        )

    async def fetch(self, call: Call) -> Answer:
        """One open copy of the caller's box, with its attachments as MTOM parts."""
        request = call.payload(OSCI, "MsgBoxFetchRequest")
        message_id = text_of(child(request, OSCI, "MsgSelector", WSA, "MessageID"))
        if not message_id:
            raise XtaFault(Fault.PARAMETER_NOT_VALID, "MsgSelector/MessageID is empty")
        entry, bundle = await self._boxes.fetch(call.own_box(), message_id)
        metadata = MessageMetaData.from_json(entry.metadata)
        if entry.fetched is None:
            metadata = metadata.with_times(initial_fetch=_now())
        header = etree.Element("header")
        metadata.write(header)
        container = etree.Element(f"{_X}GenericContentContainer", nsmap={"xta": XTA})
        content = etree.SubElement(container, f"{_X}ContentContainer")
        parts = []
        for n, part in enumerate(bundle.parts):
            content_id = f"part{n}.{entry.uuid}@xbroker"
            element = etree.SubElement(
                content,
                f"{_X}{'Message' if n == 0 else 'Attachment'}",
                contentType=part.content_type if n else "application/xml",
                filename=part.filename or _filename(entry, n),
            )
            etree.SubElement(element, f"{{{XOP}}}Include", nsmap={"xop": XOP}).set(
                "href", f"cid:{content_id}"
            )
            parts.append(MimePart(content_id, "application/octet-stream", part.content))
        return Answer(
            f"{FETCH.removesuffix('Request')}Response",
            header=[*header, _response(message_id, 0, True)],
            body=[container],
            parts=tuple(parts),
        )

    async def close(self, call: Call) -> Answer:
        """The agency has these copies: close each (and tell each author)."""
        request = call.payload(OSCI, "MsgBoxCloseRequest")
        message_ids = [text_of(e) for e in request.findall(f"{_O}LastMsgReceived")]
        if not message_ids or not all(message_ids):
            raise XtaFault(Fault.PARAMETER_NOT_VALID, "LastMsgReceived names no MessageID")
        kennung = call.own_box()
        for message_id in message_ids:
            await self._boxes.close(kennung, message_id)
        return Answer(
            f"{CLOSE.removesuffix('Request')}Response",
            header=[_response(request.get("MsgBoxRequestID", ""), 0, True)],
        )


def _response(request_id: str, pending: int, found: bool) -> etree._Element:
    response = etree.Element(f"{_O}MsgBoxResponse", nsmap={"osci": OSCI})
    response.set("MsgBoxRequestID", request_id)
    if found:
        etree.SubElement(response, f"{_O}ItemsPending").text = str(pending)
    else:
        etree.SubElement(response, f"{_O}NoMessageAvailable", reason="no open messages")
    return response


def _filename(entry: BoxEntry, n: int) -> str:
    stem = entry.nachrichtentyp or "message"
    return f"{stem}.xml" if n == 0 else f"{stem}-attachment-{n}"


def _now() -> str:
    return datetime.now(UTC).isoformat()
