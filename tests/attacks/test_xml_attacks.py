"""XML attack corpus: every input is refused as malformed-xml, quickly, in bounded memory."""

from __future__ import annotations

import resource
import time

import pytest

from broker.errors import Reason
from signing import XmlError, parse_untrusted


def _billion_laughs() -> bytes:
    entities = b'<!ENTITY lol0 "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1)) * 10) for i in range(1, 10)
    )
    return b'<?xml version="1.0"?><!DOCTYPE lolz [' + entities + b"]><lolz>&lol9;</lolz>"


def _quadratic_blowup() -> bytes:
    big = b"A" * 100_000
    return b'<!DOCTYPE r [<!ENTITY a "' + big + b'">]><r>' + b"&a;" * 1000 + b"</r>"


CORPUS: dict[str, bytes] = {
    "billion laughs": _billion_laughs(),
    "quadratic blowup": _quadratic_blowup(),
    "external entity (file)": (b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'),
    "external entity (http)": (
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><r>&x;</r>'
    ),
    "parameter entity": (b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><r/>'),
    "external DTD": b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/r.dtd"><r/>',
    "public DTD": b'<!DOCTYPE r PUBLIC "-//X//DTD X//EN" "r.dtd"><r/>',
    "internal subset only": b"<!DOCTYPE r [<!ELEMENT r ANY>]><r/>",
    "doctype in UTF-16": '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r><r/>'.encode("utf-16"),
    "100k-deep nesting": b"<a>" * 100_000 + b"</a>" * 100_000,
    "100k-deep unclosed nesting": b"<a>" * 100_000,
    "oversized input": b"<r>" + b"x" * (10 * 1024 * 1024) + b"</r>",
    "xinclude is not processed but doctype is refused": (
        b'<!DOCTYPE r [<!ENTITY x "y">]><r xmlns:xi="http://www.w3.org/2001/XInclude">'
        b'<xi:include href="file:///etc/passwd"/>&x;</r>'
    ),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_attack_is_rejected_as_malformed_xml_quickly(name: str) -> None:
    data = CORPUS[name]
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(XmlError) as caught:
        parse_untrusted(data)
    elapsed = time.perf_counter() - started
    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert caught.value.reason is Reason.MALFORMED_XML
    # A guard against expansion or a hang, not a speed measurement (bench/ has those).
    assert elapsed < 5.0, f"{name} took {elapsed:.3f}s"
    assert peak_after - peak_before < 64 * 1024, (
        f"{name} raised peak RSS by {peak_after - peak_before} KiB"
    )


def test_xinclude_elements_are_left_alone() -> None:
    root = parse_untrusted(
        b'<r xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="/etc/passwd"/></r>'
    )
    assert len(root) == 1
    assert root[0].tag == "{http://www.w3.org/2001/XInclude}include"
