"""A message with attachments, as one AMQP body.

Most messages travel alone: the body is the signed XÖV message, content type
``application/xml``. A message sent with attachments (XTA's MTOM parts) travels as a
bundle, so that the broker's decision about the message is also the decision about its
attachments, and a copy never reaches an agency without them::

    content type  application/vnd.xbroker.bundle
    body          4 bytes  big-endian length N of the table
                  N bytes  the table, JSON: {"parts": [{"content_id", "content_type",
                           "filename", "length", "sha256"}, ...]}, the message first
                  then     the parts' bytes, in the table's order

The worker checks the message (the first part) as it checks any message; the copy it
delivers is the bundle unchanged, but for a message carrying what its signature does
not cover, which is delivered without it (``with_message``). Only the message is signed
by its author; each attachment is bound to it by the SHA-256 the table records, which
every reader checks.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, replace

from broker.errors import XBrokerError

__all__ = ["BUNDLE_CONTENT_TYPE", "Bundle", "BundleError", "Part", "message_of", "with_message"]

BUNDLE_CONTENT_TYPE = "application/vnd.xbroker.bundle"
_LENGTH = struct.Struct(">I")
_MAX_TABLE = 1 << 20


class BundleError(XBrokerError, ValueError):
    """Bytes that claim to be a bundle and are not one."""


@dataclass(frozen=True, slots=True)
class Part:
    content: bytes
    content_id: str
    content_type: str = "application/octet-stream"
    filename: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True, slots=True)
class Bundle:
    message: Part
    attachments: tuple[Part, ...] = ()

    @property
    def parts(self) -> tuple[Part, ...]:
        return (self.message, *self.attachments)

    def encode(self, *, plain_if_alone: bool = True) -> tuple[bytes, str]:
        """The AMQP body and its content type: the plain message when it has no
        attachments, unless its file name and content type are to travel with it."""
        if not self.attachments and plain_if_alone:
            return self.message.content, "application/xml"
        table = json.dumps(
            {
                "parts": [
                    {
                        "content_id": p.content_id,
                        "content_type": p.content_type,
                        "filename": p.filename,
                        "length": len(p.content),
                        "sha256": p.sha256,
                    }
                    for p in self.parts
                ]
            },
            separators=(",", ":"),
        ).encode()
        return b"".join([_LENGTH.pack(len(table)), table, *(p.content for p in self.parts)]), (
            BUNDLE_CONTENT_TYPE
        )

    @classmethod
    def decode(cls, body: bytes, content_type: str | None) -> Bundle:
        """Split an AMQP body; BundleError if a part is missing, extra or altered."""
        if content_type != BUNDLE_CONTENT_TYPE:
            return cls(Part(body, "message"))
        parts = [
            Part(
                body[start:end],
                str(entry["content_id"]),
                str(entry["content_type"]),
                str(entry["filename"]),
            )
            for entry, start, end in _checked_parts(body)
        ]
        return cls(parts[0], tuple(parts[1:]))


def _checked_parts(body: bytes) -> list[tuple[dict[str, object], int, int]]:
    """Each part's table entry and where its bytes are in ``body``, once every part has
    been found to match its length and SHA-256; BundleError if any does not.

    The parts are hashed in place (a memoryview): a worker reading a bundle of
    megabytes of attachments copies none of them (only ``Bundle.decode`` does, for the
    readers that hand the attachments on).
    """
    if len(body) < _LENGTH.size:
        raise BundleError("shorter than its table length")
    (size,) = _LENGTH.unpack_from(body)
    if size > _MAX_TABLE or _LENGTH.size + size > len(body):
        raise BundleError("table length out of range")
    view = memoryview(body)
    found: list[tuple[dict[str, object], int, int]] = []
    try:
        table = json.loads(body[_LENGTH.size : _LENGTH.size + size])
        entries = list(table["parts"])
        position = _LENGTH.size + size
        for entry in entries:
            missing = {"content_id", "content_type", "filename", "sha256"} - set(entry)
            if missing:
                raise KeyError(", ".join(sorted(missing)))
            length = int(entry["length"])
            start, position = position, position + length
            if not 0 <= length <= len(body) - start or (
                hashlib.sha256(view[start:position]).hexdigest() != entry["sha256"]
            ):
                raise BundleError(f"part {str(entry['content_id'])!r} does not match its SHA-256")
            found.append((entry, start, position))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"unreadable table: {exc}") from None
    finally:
        view.release()
    if not found or position != len(body):
        raise BundleError("parts do not fill the body exactly")
    return found


def message_of(body: bytes, content_type: str | None) -> bytes:
    """The message of an AMQP body: the body itself, or a bundle's first part."""
    if content_type != BUNDLE_CONTENT_TYPE:
        return body
    _, start, end = _checked_parts(body)[0]
    return body[start:end]


def with_message(body: bytes, content_type: str | None, message: bytes) -> bytes:
    """The AMQP body ``body`` with its message replaced by ``message``: ``message``
    itself, or the bundle with ``message`` as its first part (the table records its new
    length and SHA-256)."""
    if content_type != BUNDLE_CONTENT_TYPE:
        return message
    bundle = Bundle.decode(body, content_type)
    replaced = Bundle(replace(bundle.message, content=message), bundle.attachments)
    return replaced.encode(plain_if_alone=False)[0]
