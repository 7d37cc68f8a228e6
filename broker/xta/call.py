"""One XTA request as the ports see it, and the answer they give."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from broker.errors import Fault, XtaFault
from broker.xta.mtom import MimePart
from broker.xta.soap import TRANS, Envelope, child, response_envelope, text_of

__all__ = ["Answer", "Call"]


@dataclass(frozen=True, slots=True)
class Call:
    caller: str  # the Behördenkennung of the TLS client certificate
    envelope: Envelope
    parts: dict[str, MimePart] = field(default_factory=dict)

    def payload(self, namespace: str, name: str) -> etree._Element:
        """The operation's request element in the body; a Syntax fault if absent."""
        element = self.envelope.payload()
        if element is None or element.tag != f"{{{namespace}}}{name}":
            raise XtaFault(Fault.SYNTAX_ERROR, f"the SOAP body must hold {name}")
        return element

    def own_box(self) -> str:
        """The party the request names as its author: it must be the caller itself."""
        named = text_of(child(self.envelope.header, TRANS, "Author", TRANS, "Identifier"))
        if named and named != self.caller:
            raise XtaFault(
                Fault.PERMISSION_DENIED,
                f"the request names {named}, but your certificate is {self.caller}'s",
            )
        return self.caller


@dataclass(frozen=True, slots=True)
class Answer:
    action: str
    header: list[etree._Element] = field(default_factory=list)
    body: list[etree._Element] = field(default_factory=list)
    parts: tuple[MimePart, ...] = ()

    def envelope(self, relates_to: str) -> bytes:
        return response_envelope(self.action, relates_to, self.header, self.body)
