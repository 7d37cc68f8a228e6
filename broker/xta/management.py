"""ManagementPort: message ids, transport reports, and the account and service look-ups.

A transport report is shown to the message's author (who sent it over XTA, or any
author for a message it sent another way, by its ``urn:de:xta:messageid:xbroker:``
id) and to an agency whose box received it, each seeing only the events of the
Laufzettel that concern them. Anyone else is told the id is unknown.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable

from lxml import etree

from broker.errors import Fault, XtaFault
from broker.stores.status import StatusStore
from broker.stores.xta import XtaStore
from broker.xta.call import Answer, Call
from broker.xta.metadata import (
    MESSAGE_ID_PREFIX,
    RESERVED_PREFIX,
    Code,
    Identifier,
    MessageMetaData,
)
from broker.xta.report import transport_report
from broker.xta.soap import TRANS, WSA, XTA, child, text_of
from routing import Directory

__all__ = [
    "CHECK_ACCOUNT",
    "CREATE_MESSAGE_ID",
    "LOOKUP_SERVICE",
    "TRANSPORT_REPORT",
    "ManagementPort",
]

CREATE_MESSAGE_ID = "http://www.xta.de/XTA/CreateMessageID"
TRANSPORT_REPORT = "http://www.xta.de/XTA/GetTransportReport"
CHECK_ACCOUNT = "http://www.xta.de/XTA/CheckAccountActive"
LOOKUP_SERVICE = "http://www.xta.de/XTA/LookupService"
_X = f"{{{XTA}}}"


class ManagementPort:
    def __init__(
        self,
        store: XtaStore,
        status: StatusStore,
        directory: Callable[[], Directory],
        server_identity: str,
    ) -> None:
        self._store = store
        self._status = status
        self._directory = directory
        self._server = server_identity

    def create_message_id(self, call: Call) -> Answer:
        call.own_box()
        message_id = etree.Element(f"{{{WSA}}}MessageID", nsmap={"wsa": WSA})
        message_id.text = f"{MESSAGE_ID_PREFIX}{uuidlib.uuid4()}"
        return Answer(f"{CREATE_MESSAGE_ID}Response", body=[message_id])

    async def transport_report(self, call: Call) -> Answer:
        caller = call.own_box()
        message_id = text_of(call.payload(WSA, "MessageID"))
        metadata, uuid, awaited = await self._visible(caller, message_id)
        laufzettel = (await self._status.timeline(uuid)).seen_by(caller)
        if not laufzettel.events:
            raise XtaFault(Fault.INVALID_MESSAGE_ID, f"no message {message_id} concerns you")
        if awaited is None:
            awaited = laufzettel.recipients
        report = transport_report(metadata, laufzettel, awaited, self._server)
        return Answer(f"{TRANSPORT_REPORT}Response", body=[report])

    async def _visible(
        self, caller: str, message_id: str
    ) -> tuple[MessageMetaData, str, tuple[str, ...] | None]:
        """The metadata and nachrichtenUUID of a message the caller may see, and the
        agencies whose deliveries complete it for the caller (None: all recipients)."""
        sent = self._store.sent(message_id)
        if sent is not None and sent.author == caller:
            return MessageMetaData.from_json(sent.metadata), sent.uuid, None
        entry = self._store.entry(caller, message_id)
        if entry is not None:
            return MessageMetaData.from_json(entry.metadata), entry.uuid, (caller,)
        if message_id.startswith(RESERVED_PREFIX):
            uuid = message_id.removeprefix(RESERVED_PREFIX)
            laufzettel = await self._status.timeline(uuid)
            if laufzettel.author == caller:
                metadata = MessageMetaData(
                    message_id,
                    Identifier(caller),
                    Identifier(",".join(laufzettel.recipients)),
                    message_type=Code(
                        next((e.nachrichtentyp for e in laufzettel.events if e.nachrichtentyp), "")
                        or ""
                    ),
                )
                return metadata, uuid, None
        raise XtaFault(Fault.INVALID_MESSAGE_ID, f"no message {message_id} concerns you")

    def check_account_active(self, call: Call) -> Answer:
        caller = call.own_box()
        active = etree.Element(f"{_X}AccountActive", nsmap={"xta": XTA})
        active.text = "true" if caller in self._directory() else "false"
        return Answer(f"{CHECK_ACCOUNT}Response", body=[active])

    def lookup_service(self, call: Call) -> Answer:
        """For each asked (service type, reader): does the directory route it there?"""
        call.own_box()
        request = call.payload(XTA, "LookupServiceRequest")
        directory = self._directory()
        results = etree.Element(f"{_X}LookupServiceResponse", nsmap={"xta": XTA})
        listing = etree.SubElement(results, f"{_X}LookupServiceResultList")
        for asked in request.iter(f"{_X}LookupService"):
            service = text_of(asked.find(f"{_X}ServiceType"))
            reader = text_of(child(asked, XTA, "Reader", TRANS, "Identifier"))
            agency = directory.get(reader)
            available = agency is not None and any(
                s.matches(service, version)
                for s in agency.accepts
                for version in s.versions or ("",)
            )
            result = etree.SubElement(listing, f"{_X}LookupServiceResult")
            etree.SubElement(result, f"{_X}ServiceType").text = service
            Identifier(reader).write(etree.SubElement(result, f"{_X}Reader"))
            etree.SubElement(result, f"{_X}IsServiceAvailable").text = str(available).lower()
        return Answer(f"{LOOKUP_SERVICE}Response", body=[results])
