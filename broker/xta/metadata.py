"""XTA's MessageMetaData: who sends to whom, which message, which service.

Read from a SendMessage's SOAP header, kept in the XTA store as JSON (codes and
identifiers only), written back into status lists, fetches and transport reports.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from lxml import etree

from broker.errors import Fault, XtaFault
from broker.xta.soap import TRANS, WSA, child, text_of

__all__ = [
    "MESSAGE_ID_PREFIX",
    "RESERVED_PREFIX",
    "Code",
    "Identifier",
    "MessageMetaData",
    "Times",
    "xta_message_id",
]

_T = f"{{{TRANS}}}"

MESSAGE_ID_PREFIX = "urn:de:xta:messageid:xbroker:"
RESERVED_PREFIX = f"{MESSAGE_ID_PREFIX}nachricht:"


def xta_message_id(uuid: str) -> str:
    """The XTA MessageID of a message that did not arrive over XTA (reserved: no sender
    may use it, so that no send can take the place of such a message in a box)."""
    return f"{RESERVED_PREFIX}{uuid}"


@dataclass(frozen=True, slots=True)
class Identifier:
    """A party as XTA names it; ``value`` is the Behördenkennung."""

    value: str
    type: str = "xoev"
    name: str = ""
    category: str = ""

    @classmethod
    def read(cls, element: etree._Element | None, where: str) -> Identifier:
        if element is None:
            raise XtaFault(Fault.PARAMETER_NOT_VALID, f"{where} is missing")
        value = text_of(element)
        if not value:
            raise XtaFault(Fault.PARAMETER_NOT_VALID, f"{where} is empty")
        return cls(
            value,
            element.get("type", "xoev"),
            element.get("name", ""),
            element.get("category", ""),
        )

    def write(self, parent: etree._Element, tag: str = "Identifier") -> etree._Element:
        element = etree.SubElement(parent, f"{_T}{tag}", type=self.type)
        if self.name:
            element.set("name", self.name)
        if self.category:
            element.set("category", self.category)
        element.text = self.value
        return element


@dataclass(frozen=True, slots=True)
class Code:
    code: str
    list_uri: str = ""
    list_version_id: str = ""

    @classmethod
    def read(cls, element: etree._Element | None) -> Code:
        if element is None:
            return cls("")
        return cls(
            text_of(element.find("code")),
            element.get("listURI", ""),
            element.get("listVersionID", ""),
        )

    def write(self, element: etree._Element) -> etree._Element:
        if self.list_uri:
            element.set("listURI", self.list_uri)
        if self.list_version_id:
            element.set("listVersionID", self.list_version_id)
        etree.SubElement(element, "code").text = self.code
        return element


@dataclass(frozen=True, slots=True)
class Times:
    """XTA's DeliveryAttributes, as ISO 8601 text ('' while unknown)."""

    origin: str = ""
    initial_send: str = ""
    delivery: str = ""
    initial_fetch: str = ""


@dataclass(frozen=True, slots=True)
class MessageMetaData:
    message_id: str
    author: Identifier
    reader: Identifier
    service: str = ""
    business_scenario: Code = Code("")
    message_type: Code = Code("")
    payload_schema: str = ""
    size: int | None = None
    times: Times = field(default_factory=Times)

    @classmethod
    def read(cls, element: etree._Element | None) -> MessageMetaData:
        """From ``trans:MessageMetaData``; a fault names the first field missing."""
        if element is None:
            raise XtaFault(Fault.PARAMETER_NOT_VALID, "the SOAP header has no MessageMetaData")
        message_id = text_of(child(element, TRANS, "MsgIdentification", WSA, "MessageID"))
        if not message_id:
            raise XtaFault(
                Fault.PARAMETER_NOT_VALID, "MessageMetaData/MsgIdentification/MessageID is empty"
            )
        qualifier = element.find(f"{_T}Qualifier")
        message_type = qualifier.find(f"{_T}MessageType") if qualifier is not None else None
        return cls(
            message_id=message_id,
            author=Identifier.read(
                child(element, TRANS, "Originators", TRANS, "Author", TRANS, "Identifier"),
                "MessageMetaData/Originators/Author/Identifier",
            ),
            reader=Identifier.read(
                child(element, TRANS, "Destinations", TRANS, "Reader", TRANS, "Identifier"),
                "MessageMetaData/Destinations/Reader/Identifier",
            ),
            service=text_of(qualifier.find(f"{_T}Service")) if qualifier is not None else "",
            business_scenario=Code.read(
                child(qualifier, TRANS, "BusinessScenario", TRANS, "Defined")
            ),
            message_type=Code.read(message_type),
            payload_schema=message_type.get("payloadSchema", "")
            if message_type is not None
            else "",
        )

    def write(self, parent: etree._Element) -> etree._Element:
        """Append ``trans:MessageMetaData`` to ``parent``."""
        root = etree.SubElement(parent, f"{_T}MessageMetaData", nsmap={"trans": TRANS})
        attributes = etree.SubElement(root, f"{_T}DeliveryAttributes")
        for tag, value in (
            ("Origin", self.times.origin),
            ("InitialSend", self.times.initial_send),
            ("Delivery", self.times.delivery),
            ("InitialFetch", self.times.initial_fetch),
        ):
            if value:
                etree.SubElement(attributes, f"{_T}{tag}").text = value
        self.author.write(
            etree.SubElement(etree.SubElement(root, f"{_T}Originators"), f"{_T}Author")
        )
        self.reader.write(
            etree.SubElement(etree.SubElement(root, f"{_T}Destinations"), f"{_T}Reader")
        )
        identification = etree.SubElement(root, f"{_T}MsgIdentification")
        etree.SubElement(identification, f"{{{WSA}}}MessageID").text = self.message_id
        qualifier = etree.SubElement(root, f"{_T}Qualifier")
        etree.SubElement(qualifier, f"{_T}Service").text = self.service
        self.business_scenario.write(
            etree.SubElement(etree.SubElement(qualifier, f"{_T}BusinessScenario"), f"{_T}Defined")
        )
        message_type = etree.SubElement(qualifier, f"{_T}MessageType")
        if self.payload_schema:
            message_type.set("payloadSchema", self.payload_schema)
        self.message_type.write(message_type)
        if self.size is not None:
            etree.SubElement(root, f"{_T}MsgSize").text = str(self.size)
        return root

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MessageMetaData:
        return cls(
            message_id=str(data["message_id"]),
            author=Identifier(**data["author"]),
            reader=Identifier(**data["reader"]),
            service=str(data.get("service", "")),
            business_scenario=Code(**data.get("business_scenario", {"code": ""})),
            message_type=Code(**data.get("message_type", {"code": ""})),
            payload_schema=str(data.get("payload_schema", "")),
            size=data.get("size"),
            times=Times(**data.get("times", {})),
        )

    def with_times(self, **times: str) -> MessageMetaData:
        return replace(self, times=replace(self.times, **times))
