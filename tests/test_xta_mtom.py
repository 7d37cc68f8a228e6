"""MTOM/XOP read under limits as it streams in; a bundle of a message and attachments."""

from __future__ import annotations

import json
import struct
from collections.abc import AsyncIterator

import pytest

from broker.amqp.bundle import (
    BUNDLE_CONTENT_TYPE,
    Bundle,
    BundleError,
    Part,
    message_of,
    with_message,
)
from broker.errors import Fault, XtaFault
from broker.xta.mtom import Limits, MimePart, read_soap, write_mtom

LIMITS = Limits(max_envelope=4096, max_part=10_000, max_total=30_000)
TYPE = 'multipart/related; type="application/xop+xml"; boundary="b1"; start="<root>"'
ENVELOPE = b'<Envelope xmlns="http://www.w3.org/2003/05/soap-envelope"/>'


def multipart(*parts: tuple[str, bytes], boundary: bytes = b"b1", end: bool = True) -> bytes:
    body = b""
    for content_id, content in parts:
        body += b"--" + boundary + b"\r\nContent-Type: application/octet-stream\r\n"
        body += f"Content-ID: <{content_id}>\r\n\r\n".encode() + content + b"\r\n"
    return body + (b"--" + boundary + b"--\r\n" if end else b"")


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def fault(data: bytes, content_type: str = TYPE, limits: Limits = LIMITS) -> XtaFault:
    with pytest.raises(XtaFault) as caught:
        await read_soap(chunks(data), content_type, limits)
    return caught.value


async def test_parts_are_read_by_content_id_across_chunk_boundaries() -> None:
    attachment = bytes(range(256)) * 20 + b"\r\n--b" + b"\r\n-"  # near-boundaries inside
    message = await read_soap(
        chunks(multipart(("root", ENVELOPE), ("a@x", attachment))), TYPE, LIMITS
    )

    assert message.envelope == ENVELOPE
    assert message.parts["a@x"].content == attachment


async def test_a_plain_soap_request_is_an_envelope_without_parts() -> None:
    message = await read_soap(chunks(ENVELOPE), "application/soap+xml; charset=utf-8", LIMITS)

    assert (message.envelope, message.parts) == (ENVELOPE, {})


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (multipart(("root", ENVELOPE)), "multipart/related"),  # no boundary
        (multipart(("root", ENVELOPE), end=False), TYPE),  # no closing boundary
        (b"no boundary at all" * 1000, TYPE),
        (multipart(("other", ENVELOPE)), TYPE),  # start is not the first part
        (multipart(("root", ENVELOPE), ("a", b"1"), ("a", b"2")), TYPE),  # one id twice
        (b"--b1\r\nContent-ID <root>\r\n\r\n" + ENVELOPE + b"\r\n--b1--\r\n", TYPE),
        (ENVELOPE, "application/json"),
    ],
)
async def test_a_malformed_multipart_is_a_syntax_fault(body: bytes, content_type: str) -> None:
    assert (await fault(body, content_type)).fault is Fault.SYNTAX_ERROR


async def test_a_part_over_its_limit_is_refused_before_the_rest_is_read() -> None:
    body = multipart(("root", ENVELOPE), ("big", b"x" * 100_000))
    limits = Limits(max_envelope=4096, max_part=10_000, max_total=1_000_000)
    read = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal read
        async for chunk in chunks(body, 1000):
            read += len(chunk)
            yield chunk

    with pytest.raises(XtaFault) as caught:
        await read_soap(counted(), TYPE, limits)

    assert caught.value.fault is Fault.TOO_LARGE
    assert "MTOM part" in caught.value.detail
    assert read < 20_000


async def test_a_request_over_the_total_limit_is_refused() -> None:
    parts = [("root", ENVELOPE), *((f"p{n}", b"y" * 9_000) for n in range(4))]
    error = await fault(multipart(*parts))

    assert (error.fault, error.detail) == (
        Fault.TOO_LARGE,
        "the request is larger than 30000 bytes",
    )


async def test_an_envelope_over_its_limit_is_refused() -> None:
    assert (await fault(multipart(("root", b"<a/>" * 2000)))).fault is Fault.TOO_LARGE


async def test_what_is_written_is_read_back() -> None:
    content_type, body = write_mtom(
        "urn:action", ENVELOPE, [MimePart("a", "application/pdf", b"%PDF")]
    )
    message = await read_soap(chunks(b"".join(body)), content_type, LIMITS)

    assert message.parts["a"].content == b"%PDF"


def test_a_bundle_round_trips_and_a_lone_message_stays_plain() -> None:
    bundle = Bundle(Part(b"<m/>", "m", "application/xml", "m.xml"), (Part(b"pdf", "a"),))
    body, content_type = bundle.encode()

    assert Bundle.decode(body, content_type) == bundle
    assert message_of(body, content_type) == b"<m/>"
    assert Bundle(Part(b"<m/>", "m")).encode() == (b"<m/>", "application/xml")


def test_a_message_replaced_in_a_bundle_keeps_its_attachments_and_its_name() -> None:
    bundle = Bundle(Part(b"<m><!--x--></m>", "m", "application/xml", "m.xml"), (Part(b"pdf", "a"),))
    body, content_type = bundle.encode()

    replaced = Bundle.decode(with_message(body, content_type, b"<m/>"), content_type)

    assert replaced.message == Part(b"<m/>", "m", "application/xml", "m.xml")
    assert replaced.attachments == bundle.attachments
    assert with_message(b"<m><!--x--></m>", "application/xml", b"<m/>") == b"<m/>"


@pytest.mark.parametrize("cut", [1, 10, -1])
def test_a_damaged_bundle_is_refused(cut: int) -> None:
    body, _ = Bundle(Part(b"<m/>", "m"), (Part(b"pdf", "a"),)).encode()
    damaged = body[:cut] if cut > 0 else body[:-1] + b"X"

    with pytest.raises(BundleError):
        Bundle.decode(damaged, BUNDLE_CONTENT_TYPE)


def _with_table(body: bytes, change: dict[str, object]) -> bytes:
    """``body`` with the first entry of its table changed (and the table's length)."""
    (size,) = struct.unpack_from(">I", body)
    table = json.loads(body[4 : 4 + size])
    table["parts"][0] |= change
    table["parts"][0] = {k: v for k, v in table["parts"][0].items() if v is not None}
    encoded = json.dumps(table).encode()
    return struct.pack(">I", len(encoded)) + encoded + body[4 + size :]


@pytest.mark.parametrize(
    "change",
    [{"length": -4}, {"length": 10**9}, {"sha256": "0" * 64}, {"filename": None}],
    ids=["negative length", "past the end", "other hash", "no file name"],
)
def test_a_bundle_with_a_false_table_is_refused_by_both_readers(change: dict[str, object]) -> None:
    body, content_type = Bundle(Part(b"<m/>", "m"), (Part(b"pdf", "a"),)).encode()
    damaged = _with_table(body, change)

    with pytest.raises(BundleError):
        Bundle.decode(damaged, content_type)
    with pytest.raises(BundleError):
        message_of(damaged, content_type)


def test_an_altered_attachment_fails_the_message_read_too() -> None:
    body, content_type = Bundle(Part(b"<m/>", "m"), (Part(b"pdf", "a"),)).encode()

    with pytest.raises(BundleError, match="'a' does not match"):
        message_of(body[:-1] + b"X", content_type)
