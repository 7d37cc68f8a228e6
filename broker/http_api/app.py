"""The HTTP API: submit signed messages, read their Laufzettel.

``POST /v1/messages``
    The body is the signed XML message (Content-Type ``application/xml``, ``text/xml``
    or ``application/<type>+xml``, else 415). 202 with the nachrichtenUUID and a
    Location; the same UUID with the same bytes again from the same caller: the same
    202, nothing published twice; with other bytes: 409. A UUID is the caller's own: the
    same UUID from another caller is that caller's message, answered as any fresh one.
    413 above the size limit (Content-Length is checked first, and the body is counted
    as it streams, never read past the limit). A client that goes away mid-body gets
    no answer and leaves a log event, not a traceback.
    503 with Retry-After while the ingress queue holds more than its limit or RabbitMQ
    does not confirm. Receipts go where the portal SDK's go: the caller's receipt queue.
``GET /v1/messages/{uuid}``
    The Laufzettel as JSON, only the events concerning the caller; 404 for a message
    the caller is neither author nor recipient of (not 403: existence is not revealed).

Nothing here reads the message beyond its identity (the nachrichtenUUID, or what its
manifest names); where its standard has none (xdomea), the ``Idempotency-Key`` header
is the id the broker assigns one from, so a retry with the same key is the same message.
The broker checks signature, header, schema and routing as for any other submission.

A body sealed for the broker (``Content-Type: application/jose``, a JWE in the compact
serialisation, `sealing`) is opened in memory to read its identity and is published still
sealed; the ``sha256`` answered is that of the signed message inside, as in receipts. A
seal that does not open is answered 400 with its code (``seal-key-unknown``,
``seal-invalid``); a sealed body may be as large as the seal of a message of the size
limit.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Protocol

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from broker.amqp.publishing import travelling_identity
from broker.errors import TransientError
from broker.http_api.auth import Authenticator
from broker.logs import event
from broker.stores.journal import EventKind, Recorder, StatusEvent
from broker.stores.status import StatusStore, SubmissionMatch
from sealing import SEALED_CONTENT_TYPE, Opened, SealLimits, UnsealError
from signing import ParserLimits, XmlError, parse_untrusted
from xta_schemas import Catalog

__all__ = ["ApiLimits", "IngressQueue", "build_api"]

log = logging.getLogger("xbroker.http")

INLINE_PARSE_BYTES = 16 * 1024
"""A message up to this size has its identity read on the loop: parsing 2-10 KB takes
35-80 µs, less than handing it to a thread and back (docs/performance.md)."""

_XML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The signed XÖV message (enveloped XML-DSig), exactly as signed; or "
        "that message sealed for the broker's encryption key (JWE, compact serialisation).",
        "content": {
            "application/xml": {"schema": {"type": "string", "format": "binary"}},
            SEALED_CONTENT_TYPE: {"schema": {"type": "string"}},
        },
    }
}

Opener = Callable[[bytes], Opened]
"""Opens a body sealed for the broker, in memory (`broker.worker.sealer.Sealer.open`)."""


class IngressQueue(Protocol):
    """Where submissions go (the HTTP API's and the XTA endpoint's): `IngressPublisher`."""

    async def publish(
        self, body: bytes, uuid: str, reply_to: str, content_type: str = "application/xml"
    ) -> None: ...

    async def depth(self) -> int: ...


class ApiLimits(BaseModel):
    max_body_bytes: int
    xml: ParserLimits = ParserLimits()
    queue_limit: int
    retry_after_seconds: int = 5


class Submitted(BaseModel):
    uuid: str
    sha256: str
    location: str


class Event(BaseModel):
    kind: str
    at: str
    author: str | None = None
    agency: str | None = None
    nachrichtentyp: str | None = None
    standard: str | None = None
    sha256: str | None = None
    reason: str | None = None
    recipients: list[str] | None = None


class LaufzettelView(BaseModel):
    uuid: str
    state: str
    author: str | None
    recipients: list[str]
    events: list[Event]


class _TooLarge(Exception):
    pass


def _is_xml(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media in ("application/xml", "text/xml") or (
        media.startswith("application/") and media.endswith("+xml")
    )


def build_api(
    *,
    status: StatusStore,
    ingress: IngressQueue,
    catalog: Catalog,
    authenticate: Authenticator | Callable[[Request], str | None],
    limits: ApiLimits,
    journal: Recorder | None = None,
    opener: Opener | None = None,
) -> FastAPI:
    """The ASGI app. ``journal`` learns of each new submission (default: ``status``);
    ``opener`` opens sealed bodies (without it, ``application/jose`` is refused: 415)."""
    journal = journal or status
    api = FastAPI(
        title="xbroker",
        version="1",
        summary="Submit signed XÖV messages and follow their Laufzettel.",
    )

    def caller(request: Request) -> str:
        kennung = authenticate(request)
        if kennung is None:
            raise HTTPException(
                401,
                "a bearer token or client certificate is required",
                {"WWW-Authenticate": "Bearer"},
            )
        return kennung

    def busy(detail: str) -> HTTPException:
        return HTTPException(503, detail, {"Retry-After": str(limits.retry_after_seconds)})

    @api.post(
        "/v1/messages",
        status_code=202,
        response_model=Submitted,
        openapi_extra=_XML_BODY,
        responses={
            400: {"description": "not XML, or a seal that does not open"},
            401: {"description": "no valid token or client certificate"},
            409: {"description": "the caller submitted another message under this UUID"},
            413: {"description": "larger than the size limit"},
            415: {"description": "the Content-Type is neither XML nor a seal this API opens"},
            503: {"description": "the ingress is over its limit; retry after Retry-After"},
        },
    )
    async def submit(request: Request) -> Response:
        author = caller(request)
        sealed = _media_type(request) == SEALED_CONTENT_TYPE
        if sealed and opener is None:
            raise HTTPException(415, "this API opens no sealed submissions")
        if not sealed and not _is_xml(request.headers.get("content-type")):
            raise HTTPException(
                415,
                "the body must be the signed message as application/xml, "
                "or sealed for the broker as application/jose",
            )
        limit = (
            SealLimits(limits.max_body_bytes).max_sealed_bytes if sealed else limits.max_body_bytes
        )
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPException(413, f"larger than {limit} bytes")
        try:
            if await ingress.depth() > limits.queue_limit:
                raise busy("the ingress queue is over its limit")
        except TransientError as exc:
            raise busy("RabbitMQ is not reachable") from exc
        try:
            body = await _read_limited(request.stream(), limit)
        except _TooLarge:
            raise HTTPException(413, f"larger than {limit} bytes") from None
        except ClientDisconnect:
            # Nobody is left to answer; what arrived is dropped, nothing was claimed.
            event(log, "http.client_gone", author=author)
            return Response(status_code=400)
        # Opening and parsing are CPU work: off the loop, which the broker's worker shares,
        # except for a message small enough that handing it over costs the loop more.
        message = body
        if sealed:
            assert opener is not None
            try:
                message = (await asyncio.to_thread(opener, body)).plaintext
            except UnsealError as exc:
                raise HTTPException(400, str(exc)) from None
        key = request.headers.get("idempotency-key")
        if len(message) <= INLINE_PARSE_BYTES:
            uuid = _uuid_of(message, catalog, limits, key)
        else:
            uuid = await asyncio.to_thread(_uuid_of, message, catalog, limits, key)
        digest = hashlib.sha256(message).hexdigest()
        claim = await status.claim_submission(uuid, author, digest)
        if claim.match is SubmissionMatch.CONFLICT:
            raise HTTPException(409, f"you submitted another message as {uuid}")
        answer = Submitted(uuid=uuid, sha256=digest, location=f"/v1/messages/{uuid}")
        if claim.match is SubmissionMatch.NEW:
            # Received now; written once RabbitMQ has it (the worker does not write it
            # again), and before the worker's events, which come later in time.
            received = StatusEvent(uuid, EventKind.RECEIVED, author=author, digest=digest)
            try:
                await ingress.publish(
                    body, uuid, author, SEALED_CONTENT_TYPE if sealed else "application/xml"
                )
            except TransientError as exc:
                await status.release_submission(uuid, author, digest)
                raise busy("RabbitMQ did not confirm the submission") from exc
            await journal.record(received)
            event(log, "http.submitted", uuid=uuid, author=author, bytes=len(body))
        return JSONResponse(
            answer.model_dump(), status_code=202, headers={"Location": answer.location}
        )

    @api.get(
        "/v1/messages/{uuid}",
        response_model=LaufzettelView,
        responses={404: {"description": "no message under this UUID concerns the caller"}},
    )
    async def laufzettel(uuid: str, request: Request) -> LaufzettelView:
        kennung = caller(request)
        seen = (await status.timeline(uuid)).seen_by(kennung)
        if not seen.events:
            raise HTTPException(404, "no such message for this caller")
        return LaufzettelView.model_validate(seen.as_dict())

    return api


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _read_limited(chunks: AsyncIterator[bytes], limit: int) -> bytes:
    """The body, counted as it arrives; _TooLarge as soon as it passes ``limit``."""
    received = bytearray()
    async for chunk in chunks:
        received += chunk
        if len(received) > limit:
            raise _TooLarge
    return bytes(received)


def _uuid_of(body: bytes, catalog: Catalog, limits: ApiLimits, key: str | None) -> str:
    """The identity the message states, as its standard's manifest places it; where the
    standard has none, the one the broker assigns from the Idempotency-Key (or a new id).
    A message whose header cannot be read is published all the same: the broker answers
    with a rejection receipt, which the caller finds under this id."""
    try:
        root = parse_untrusted(body, replace(limits.xml, max_bytes=limits.max_body_bytes))
    except XmlError as exc:
        raise HTTPException(400, f"malformed-xml: {exc}") from None
    return travelling_identity(catalog.stated_identity(root), key)
