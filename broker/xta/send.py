"""SendXtaPort: SendMessage, into the same ingress as every other submission.

The endpoint checks only what it must to accept the request: that the MTOM parts the
GenericContentContainer names are there, that the MessageMetaData agrees with the
message's signed header (author and reader) and the author with the TLS identity, and
that the MessageID is not taken by another message. It reads the header as the HTTP API
does, without verifying; signature, schema, authorization, dedup and routing are the
worker's, as for any submission, and their outcome is in the transport report.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from dataclasses import dataclass
from urllib.parse import unquote

from lxml import etree

from broker.amqp.bundle import Bundle, Part
from broker.errors import Fault, TransientError, XtaFault
from broker.http_api.app import IngressQueue
from broker.logs import event
from broker.stores.journal import EventKind, Recorder, StatusEvent
from broker.stores.status import StatusStore, SubmissionMatch
from broker.stores.xta import SendClaim, SentMessage, XtaStore
from broker.xta.call import Answer, Call
from broker.xta.metadata import RESERVED_PREFIX, MessageMetaData
from broker.xta.mtom import MimePart
from broker.xta.soap import TRANS, XOP, XTA, child, text_of
from signing import ParserLimits, XmlError, parse_untrusted
from xta_schemas import Catalog, Header, MessageError

__all__ = ["SEND_MESSAGE", "SendLimits", "SendPort"]

log = logging.getLogger("xbroker.xta")

SEND_MESSAGE = "http://www.xta.de/XTA/SendMessage"
_X = f"{{{XTA}}}"


@dataclass(frozen=True, slots=True)
class SendLimits:
    xml: ParserLimits  # what a message is parsed with, as every message is
    queue_limit: int


class SendPort:
    def __init__(
        self,
        *,
        catalog: Catalog,
        status: StatusStore,
        journal: Recorder,
        store: XtaStore,
        ingress: IngressQueue,
        limits: SendLimits,
    ) -> None:
        self._catalog = catalog
        self._status = status
        self._journal = journal
        self._store = store
        self._ingress = ingress
        self._limits = limits

    async def send_message(self, call: Call) -> Answer:
        metadata = MessageMetaData.read(child(call.envelope.header, TRANS, "MessageMetaData"))
        if metadata.message_id.startswith(RESERVED_PREFIX) or len(metadata.message_id) > 256:
            raise XtaFault(
                Fault.PARAMETER_NOT_VALID,
                f"MessageID {metadata.message_id[:256]} is not one a sender may use "
                "(CreateMessageID gives one)",
            )
        container = child(call.payload(XTA, "GenericContentContainer"), XTA, "ContentContainer")
        if container is None:
            raise XtaFault(Fault.SYNTAX_ERROR, "GenericContentContainer has no ContentContainer")
        unused = dict(call.parts)
        message = _part(container.find(f"{_X}Message"), unused, "Message")
        attachments = tuple(
            _part(element, unused, f"Attachment {n}")
            for n, element in enumerate(container.findall(f"{_X}Attachment"), 1)
        )
        if unused:
            raise XtaFault(
                Fault.SYNTAX_ERROR, f"MTOM part {next(iter(unused))} is not named in the container"
            )
        # Parsing is CPU work: off the loop, which the broker's worker shares.
        header = await asyncio.to_thread(self._header, message.content)
        _agree(metadata, header, call.caller)
        bundle = Bundle(message, attachments)
        sent = SentMessage(
            message_id=metadata.message_id,
            uuid=header.uuid,
            author=header.author.kennung,
            digest=message.sha256,
            attachments=tuple(a.sha256 for a in attachments),
            metadata=metadata.to_json(),
        )
        claim = self._store.claim_send(sent)
        if claim is SendClaim.CONFLICT:
            raise XtaFault(
                Fault.PARAMETER_NOT_VALID,
                f"MessageID {metadata.message_id} was sent before with another message",
            )
        if claim is SendClaim.NEW:
            await self._publish(sent, bundle)
        return Answer(f"{SEND_MESSAGE}Response")

    async def _publish(self, sent: SentMessage, bundle: Bundle) -> None:
        submission = await self._status.claim_submission(sent.uuid, sent.author, sent.digest)
        if submission.match is SubmissionMatch.CONFLICT:
            self._store.release_send(sent.message_id)
            raise XtaFault(
                Fault.PARAMETER_NOT_VALID,
                f"nachrichtenUUID {sent.uuid} was submitted before with other content",
            )
        if submission.match is SubmissionMatch.SAME:
            return  # the same message again (under another MessageID): published once
        # A bundle even when alone: the agency fetches the message under its file name.
        body, content_type = bundle.encode(plain_if_alone=False)
        received = StatusEvent(
            sent.uuid, EventKind.RECEIVED, author=sent.author, digest=sent.digest
        )
        try:
            if await self._ingress.depth() > self._limits.queue_limit:
                raise TransientError("the ingress queue is over its limit")
            await self._ingress.publish(body, sent.uuid, sent.author, content_type)
        except TransientError as exc:
            await self._status.release_submission(sent.uuid, sent.author, sent.digest)
            self._store.release_send(sent.message_id)
            raise XtaFault(
                Fault.TECHNICAL_PROBLEM, "the broker cannot take the message now; send it again"
            ) from exc
        await self._journal.record(received)  # the worker does not record it again
        event(
            log,
            "xta.sent",
            uuid=sent.uuid,
            author=sent.author,
            attachments=len(bundle.attachments),
            bytes=len(body),
        )

    def _header(self, content: bytes) -> Header:
        """The message's header, as its standard's manifest places it (not yet verified)."""
        try:
            root = parse_untrusted(content, self._limits.xml)
        except XmlError as exc:
            raise XtaFault(
                Fault.SYNTAX_ERROR, f"the message is not well-formed XML: {exc.detail}"
            ) from None
        try:
            standard, _ = self._catalog.identify(root)
            return standard.header(root)
        except MessageError as exc:
            raise XtaFault(
                Fault.PARAMETER_NOT_VALID, f"the message's header cannot be read: {exc}"
            ) from None


def _part(element: etree._Element | None, parts: dict[str, MimePart], name: str) -> Part:
    """The bytes an xta:Message or xta:Attachment refers to (XOP), or carries (base64)."""
    if element is None:
        raise XtaFault(Fault.SYNTAX_ERROR, f"the ContentContainer has no {name}")
    include = element.find(f"{{{XOP}}}Include")
    if include is not None:
        href = include.get("href", "")
        content_id = unquote(href.removeprefix("cid:"))
        part = parts.pop(content_id, None)
        if not href.startswith("cid:") or part is None:
            raise XtaFault(Fault.SYNTAX_ERROR, f"{name} refers to a missing MTOM part {href!r}")
        content = part.content
    else:
        try:
            content = base64.b64decode(text_of(element), validate=True)
        except ValueError:
            raise XtaFault(Fault.SYNTAX_ERROR, f"{name} is neither XOP nor base64") from None
        content_id = f"{hashlib.sha256(content).hexdigest()[:16]}@xbroker"
    return Part(
        content,
        content_id,
        element.get("contentType", "application/octet-stream"),
        element.get("filename", ""),
    )


def _agree(metadata: MessageMetaData, header: Header, caller: str) -> None:
    """MessageMetaData, the signed header and the TLS identity name the same parties."""
    author = header.author.kennung
    if metadata.author.value != author:
        raise XtaFault(
            Fault.PARAMETER_NOT_VALID,
            f"MessageMetaData/Originators/Author/Identifier is {metadata.author.value}, "
            f"but the message's autor is {author}",
        )
    if author != caller:
        raise XtaFault(
            Fault.PERMISSION_DENIED,
            f"the message's autor is {author}, but your certificate is {caller}'s",
        )
    readers = [reader.kennung for reader in header.readers]
    if readers and metadata.reader.value not in readers:
        raise XtaFault(
            Fault.PARAMETER_NOT_VALID,
            f"MessageMetaData/Destinations/Reader/Identifier is {metadata.reader.value}, "
            f"but the message's leser is {', '.join(readers)}",
        )
