"""MTOM/XOP: SOAP messages as ``multipart/related``, read as they stream in, and written.

Reading counts every byte as it arrives: a part over ``max_part`` bytes, an envelope
over ``max_envelope`` or a request over ``max_total`` is refused at once with a
``MessageTooLargeException`` fault, before the rest is read. A multipart that does not
parse (no boundary, no start part, a part without end, headers without end, a
Content-ID twice) is refused with a ``SyntaxErrorException`` fault. A plain SOAP request
(``application/soap+xml``) is read the same way, as an envelope without parts.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message

from broker.errors import Fault, XtaFault

__all__ = ["Limits", "MimePart", "MtomMessage", "read_soap", "write_mtom"]

_MAX_HEADERS = 8 * 1024
_MAX_PARTS = 1000
_ROOT_ID = "root.message@xbroker"


@dataclass(frozen=True, slots=True)
class Limits:
    max_envelope: int
    max_part: int
    max_total: int


@dataclass(frozen=True, slots=True)
class MimePart:
    content_id: str
    content_type: str
    content: bytes


@dataclass(frozen=True, slots=True)
class MtomMessage:
    envelope: bytes
    parts: dict[str, MimePart] = field(default_factory=dict)  # by Content-ID, without <>


def _params(content_type: str) -> tuple[str, dict[str, str]]:
    message = Message()
    message["Content-Type"] = content_type
    params = {str(k).lower(): str(v) for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


def _too_large(what: str, limit: int) -> XtaFault:
    return XtaFault(Fault.TOO_LARGE, f"{what} is larger than {limit} bytes")


async def read_soap(chunks: AsyncIterator[bytes], content_type: str, limits: Limits) -> MtomMessage:
    """The envelope and the parts of a request body, read under ``limits``."""
    kind, params = _params(content_type)
    if kind in ("application/soap+xml", "text/xml"):
        envelope = bytearray()
        async for chunk in chunks:
            envelope += chunk
            if len(envelope) > limits.max_envelope:
                raise _too_large("the SOAP envelope", limits.max_envelope)
        return MtomMessage(bytes(envelope))
    if kind != "multipart/related":
        raise XtaFault(
            Fault.SYNTAX_ERROR,
            f"expected multipart/related (MTOM) or application/soap+xml, not {kind}",
        )
    boundary = params.get("boundary", "")
    if not boundary or len(boundary) > 200:
        raise XtaFault(Fault.SYNTAX_ERROR, "the multipart/related content type has no boundary")
    reader = _MultipartReader(boundary.encode("ascii", "replace"), limits)
    async for chunk in chunks:
        reader.feed(chunk)
    parts = reader.finish()
    start = params.get("start", "").strip().removeprefix("<").removesuffix(">")
    root = parts[0]
    if start and root.content_id != start:
        raise XtaFault(Fault.SYNTAX_ERROR, "the first MTOM part is not the start part")
    by_id: dict[str, MimePart] = {}
    for part in parts[1:]:
        if not part.content_id or part.content_id in by_id or part.content_id == root.content_id:
            raise XtaFault(
                Fault.SYNTAX_ERROR, "every MTOM attachment needs a Content-ID of its own"
            )
        by_id[part.content_id] = part
    if len(root.content) > limits.max_envelope:
        raise _too_large("the SOAP envelope", limits.max_envelope)
    return MtomMessage(root.content, by_id)


class _MultipartReader:
    """A push parser for one multipart body; keeps at most one part in memory."""

    def __init__(self, boundary: bytes, limits: Limits) -> None:
        self._first = b"--" + boundary
        self._delimiter = b"\r\n--" + boundary
        self._limits = limits
        self._buffer = bytearray()
        self._total = 0
        self._state = "preamble"
        self._headers: dict[str, str] = {}
        self._content = bytearray()
        self._parts: list[MimePart] = []

    def feed(self, chunk: bytes) -> None:
        self._total += len(chunk)
        if self._total > self._limits.max_total:
            raise _too_large("the request", self._limits.max_total)
        self._buffer += chunk
        while self._step():
            pass

    def finish(self) -> list[MimePart]:
        if self._state != "done":
            raise XtaFault(Fault.SYNTAX_ERROR, "the multipart body ends before its last boundary")
        if not self._parts:
            raise XtaFault(Fault.SYNTAX_ERROR, "the multipart body has no parts")
        return self._parts

    def _step(self) -> bool:
        """Advance as far as the buffer allows; True if it should be called again."""
        if self._state == "preamble":
            at = self._buffer.find(self._first)
            if at == -1:
                if len(self._buffer) > _MAX_HEADERS:
                    raise XtaFault(Fault.SYNTAX_ERROR, "no multipart boundary at the start")
                return False
            del self._buffer[: at + len(self._first)]
            self._state = "after-boundary"
            return True
        if self._state == "after-boundary":
            if len(self._buffer) < 2:
                return False
            if self._buffer.startswith(b"--"):
                self._state = "done"
                self._buffer.clear()  # the epilogue is ignored
                return False
            end = self._buffer.find(b"\r\n")
            if end == -1:
                return self._bounded("boundary line")
            del self._buffer[: end + 2]  # transport padding after the boundary
            self._state = "headers"
            return True
        if self._state == "headers":
            end = self._buffer.find(b"\r\n\r\n")
            if self._buffer.startswith(b"\r\n"):
                end = -2  # a part without headers
            if end == -1:
                return self._bounded("part headers")
            self._headers = _headers(bytes(self._buffer[: max(end, 0)]))
            del self._buffer[: end + 4]
            self._content = bytearray()
            self._state = "content"
            return True
        if self._state == "content":
            at = self._buffer.find(self._delimiter)
            if at == -1:
                keep = len(self._delimiter) - 1
                if len(self._buffer) > keep:
                    self._append(self._buffer[: len(self._buffer) - keep])
                    del self._buffer[: len(self._buffer) - keep]
                return False
            self._append(self._buffer[:at])
            del self._buffer[: at + len(self._delimiter)]
            self._close_part()
            self._state = "after-boundary"
            return True
        return False

    def _bounded(self, what: str) -> bool:
        if len(self._buffer) > _MAX_HEADERS:
            raise XtaFault(Fault.SYNTAX_ERROR, f"the {what} of a multipart part has no end")
        return False

    def _append(self, data: bytes | bytearray) -> None:
        limit = self._limits.max_envelope if not self._parts else self._limits.max_part
        if len(self._content) + len(data) > limit:
            what = "the SOAP envelope" if not self._parts else "an MTOM part"
            raise _too_large(what, limit)
        self._content += data

    def _close_part(self) -> None:
        if len(self._parts) >= _MAX_PARTS:
            raise XtaFault(Fault.SYNTAX_ERROR, f"more than {_MAX_PARTS} MTOM parts")
        content_id = self._headers.get("content-id", "").strip()
        self._parts.append(
            MimePart(
                content_id.removeprefix("<").removesuffix(">"),
                self._headers.get("content-type", "application/octet-stream"),
                bytes(self._content),
            )
        )


def _headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split(b"\r\n"):
        if not line:
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name.strip():
            raise XtaFault(Fault.SYNTAX_ERROR, "a multipart part header is not 'Name: value'")
        headers[name.strip().decode("ascii", "replace").lower()] = value.strip().decode(
            "utf-8", "replace"
        )
    return headers


def write_mtom(
    action: str, envelope: bytes, parts: Sequence[MimePart]
) -> tuple[str, Iterator[bytes]]:
    """A response as multipart/related: its content type and its body, part by part."""
    boundary = f"uuid:{uuidlib.uuid4()}"
    info = f'application/soap+xml; action=\\"{action}\\"'
    content_type = (
        f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; '
        f'start="<{_ROOT_ID}>"; start-info="{info}"'
    )

    def body() -> Iterator[bytes]:
        root = MimePart(_ROOT_ID, f'application/xop+xml; charset=UTF-8; type="{info}"', envelope)
        for part in (root, *parts):
            yield (
                f"--{boundary}\r\n"
                f"Content-Type: {part.content_type}\r\n"
                f"Content-Transfer-Encoding: binary\r\n"
                f"Content-ID: <{part.content_id}>\r\n\r\n"
            ).encode()
            yield part.content
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return content_type, body()
