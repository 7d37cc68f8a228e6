"""SOAP 1.2 envelopes with WS-Addressing: read a request's, write responses and faults.

The request envelope is parsed with the hardened parser every other untrusted document
goes through (`signing.parse_untrusted`: no DTD, no entities, no network, size and depth
bounds). A fault says what was wrong with the caller's own request and nothing else:
never a stack trace, never another party's data.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass

from lxml import etree

from broker.errors import Fault, XtaFault
from signing import ParserLimits, XmlError, parse_untrusted

__all__ = [
    "OSCI",
    "SOAP",
    "TRANS",
    "WSA",
    "XOP",
    "XTA",
    "Envelope",
    "child",
    "fault_envelope",
    "read_envelope",
    "response_envelope",
    "text_of",
]

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://www.w3.org/2005/08/addressing"
XOP = "http://www.w3.org/2004/08/xop/include"
TRANS = "http://www.osci.eu/ws/2014/10/transport"  # MessageMetaData, Author
OSCI = "http://www.osci.eu/ws/2008/05/transport"  # the message box's requests and answers
XTA = "http://xoev.de/transport/xta/211"  # content containers, reports, fault details
FAULT_ACTION = "http://www.w3.org/2005/08/addressing/soap/fault"
FAULT_CODE_LIST = "urn:xbroker:xta:codeliste:fehler"

_NSMAP = {"soap": SOAP, "wsa": WSA}


@dataclass(frozen=True, slots=True)
class Envelope:
    header: etree._Element
    body: etree._Element
    action: str
    message_id: str

    def payload(self) -> etree._Element | None:
        """The body's first element: the operation's request."""
        return next((e for e in self.body if isinstance(e.tag, str)), None)


def text_of(element: etree._Element | None) -> str:
    return (element.text or "").strip() if element is not None else ""


def child(element: etree._Element | None, *path: str) -> etree._Element | None:
    """``child(e, NS1, "A", NS2, "B")``: e/NS1:A/NS2:B, or None."""
    for namespace, name in zip(path[::2], path[1::2], strict=True):
        if element is None:
            return None
        element = element.find(f"{{{namespace}}}{name}")
    return element


def read_envelope(data: bytes, limits: ParserLimits) -> Envelope:
    """A SOAP 1.2 envelope; a SyntaxError fault if it is anything else."""
    try:
        root = parse_untrusted(data, limits)
    except XmlError as exc:
        raise XtaFault(Fault.SYNTAX_ERROR, f"the SOAP envelope is not well-formed: {exc}") from None
    if root.tag != f"{{{SOAP}}}Envelope":
        raise XtaFault(Fault.SYNTAX_ERROR, "not a SOAP 1.2 envelope")
    header = root.find(f"{{{SOAP}}}Header")
    body = root.find(f"{{{SOAP}}}Body")
    if header is None or body is None:
        raise XtaFault(Fault.SYNTAX_ERROR, "the SOAP envelope needs a Header and a Body")
    return Envelope(
        header=header,
        body=body,
        action=text_of(header.find(f"{{{WSA}}}Action")),
        message_id=text_of(header.find(f"{{{WSA}}}MessageID")),
    )


def _skeleton(
    action: str, relates_to: str
) -> tuple[etree._Element, etree._Element, etree._Element]:
    root = etree.Element(f"{{{SOAP}}}Envelope", nsmap=_NSMAP)
    header = etree.SubElement(root, f"{{{SOAP}}}Header")
    etree.SubElement(header, f"{{{WSA}}}Action").text = action
    etree.SubElement(header, f"{{{WSA}}}MessageID").text = f"urn:uuid:{uuidlib.uuid4()}"
    if relates_to:
        etree.SubElement(header, f"{{{WSA}}}RelatesTo").text = relates_to
    body = etree.SubElement(root, f"{{{SOAP}}}Body")
    return root, header, body


def response_envelope(
    action: str,
    relates_to: str,
    header: list[etree._Element] | None = None,
    body: list[etree._Element] | None = None,
) -> bytes:
    root, header_element, body_element = _skeleton(action, relates_to)
    header_element.extend(header or [])
    body_element.extend(body or [])
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def fault_envelope(error: XtaFault, relates_to: str = "") -> bytes:
    """A SOAP 1.2 fault with XTA's detail element: the fault's name and a code."""
    root, _header, body = _skeleton(FAULT_ACTION, relates_to)
    fault = etree.SubElement(body, f"{{{SOAP}}}Fault")
    code = etree.SubElement(fault, f"{{{SOAP}}}Code")
    etree.SubElement(code, f"{{{SOAP}}}Value").text = (
        "soap:Sender" if error.fault.sender else "soap:Receiver"
    )
    reason = etree.SubElement(fault, f"{{{SOAP}}}Reason")
    text = etree.SubElement(reason, f"{{{SOAP}}}Text")
    text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
    text.text = error.detail
    detail = etree.SubElement(fault, f"{{{SOAP}}}Detail")
    exception = etree.SubElement(detail, f"{{{XTA}}}{error.fault.value}", nsmap={"xta": XTA})
    error_code = etree.SubElement(
        exception, f"{{{XTA}}}ErrorCode", listURI=FAULT_CODE_LIST, listVersionID="1"
    )
    etree.SubElement(error_code, "code").text = error.fault.code
    etree.SubElement(error_code, "name").text = error.fault.value
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
