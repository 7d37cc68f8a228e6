"""Hostile inputs made from one validly signed message, at whatever size is asked for.

Every generator takes the bytes of a signed message (as ``Signer.sign`` writes them: an
XML declaration, the root, the ds:Signature as the root's last child) and returns them
changed the way one class of attack changes them. Nothing here needs a private key: an
attacker has a signed message of their own, or replays one they saw, and every signed
message carries a trusted certificate in KeyInfo.

The suite calls them with sizes just past a limit, to show that the limit fires;
``bench.hostile`` calls them with the sizes the attacks were first measured at, to show
what each costs now. No input is stored: each is made when needed.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Callable
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = [
    "HOSTILE",
    "attribute_flood",
    "attribute_spread",
    "certificate_flood",
    "element_flood",
    "inclusive_c14n",
    "namespace_flood",
    "namespace_spread",
    "pi_flood",
    "reference_flood",
    "signed_info_flood",
    "text_flood",
]

EXCLUSIVE: Final = b"http://www.w3.org/2001/10/xml-exc-c14n#"
INCLUSIVE: Final = b"http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
_SIGNATURE_START: Final = re.compile(rb"<([A-Za-z_][\w.-]*:)?Signature[\s>]")


def _root_tag_end(signed: bytes) -> int:
    """The offset of the ``>`` that closes the root's start tag."""
    start = 0
    while signed[start : start + 2] in (b"<?", b"<!") or signed[start : start + 1] != b"<":
        start = signed.index(b"<", start + 1)
    # lxml writes ">" in attribute values as "&gt;", so the first ">" closes the tag.
    return signed.index(b">", start)


def _signature_start(signed: bytes) -> int:
    found = _SIGNATURE_START.search(signed)
    if found is None:
        raise ValueError("the message has no ds:Signature")
    return found.start()


def _before_signature(signed: bytes, inserted: bytes) -> bytes:
    """``inserted`` as content of the root, just before the signature (signed content)."""
    at = _signature_start(signed)
    return signed[:at] + inserted + signed[at:]


def _inside_signature(signed: bytes, tag: bytes, inserted: bytes, *, after: bool) -> bytes:
    """``inserted`` right after the start (or before the end) of the first ds:``tag``."""
    found = re.search(rb"<(?:[\w.-]+:)?" + tag + rb"[\s>/]", signed)
    if found is None:
        raise ValueError(f"the message has no ds:{tag.decode()}")
    if after:
        close = found.group().endswith(b"/")
        at = signed.index(b">", found.start()) + 1
        if close:
            raise ValueError(f"ds:{tag.decode()} is empty")
        return signed[:at] + inserted + signed[at:]
    end = re.search(rb"</(?:[\w.-]+:)?" + tag + rb">", signed)
    if end is None:
        raise ValueError(f"ds:{tag.decode()} is not closed")
    return signed[: end.start()] + inserted + signed[end.start() :]


def namespace_flood(signed: bytes, count: int) -> bytes:
    """``count`` unused namespace declarations on the root: all of them in scope everywhere.

    Exclusive c14n leaves them out, so the signature still verifies (a replay); inclusive
    c14n renders them on every element, at a cost that grows with their square.
    """
    declarations = b"".join(b' xmlns:n%d="urn:n:%d"' % (i, i) for i in range(count))
    end = _root_tag_end(signed)
    return signed[:end] + declarations + signed[end:]


def namespace_spread(signed: bytes, count: int) -> bytes:
    """``count`` sibling elements, each declaring a namespace of its own: few in scope at
    any element, many in the document."""
    return _before_signature(
        signed, b"".join(b'<n%d:x xmlns:n%d="urn:n:%d"/>' % (i, i, i) for i in range(count))
    )


def inclusive_c14n(signed: bytes) -> bytes:
    """SignedInfo and the reference switched to inclusive C14N 1.0 (the signature breaks,
    but canonicalizing SignedInfo comes before the signature check)."""
    return signed.replace(EXCLUSIVE, INCLUSIVE)


def element_flood(signed: bytes, count: int) -> bytes:
    """``count`` empty elements before the signature: a digest mismatch, found only after
    the whole tree has been built, copied and canonicalized."""
    return _before_signature(signed, b"<x/>" * count)


def pi_flood(signed: bytes, count: int) -> bytes:
    """``count`` processing instructions inside the root (covered by c14n, so not refused
    as unsigned content before the digest)."""
    return _before_signature(signed, b"<?p?>" * count)


def attribute_flood(signed: bytes, count: int) -> bytes:
    """One element with ``count`` attributes."""
    attributes = b"".join(b' a%d=""' % i for i in range(count))
    return _before_signature(signed, b"<x" + attributes + b"/>")


def attribute_spread(signed: bytes, count: int, per_element: int = 16) -> bytes:
    """``count`` attributes, ``per_element`` on each of many elements."""
    element = b"<x" + b"".join(b' a%d=""' % i for i in range(per_element)) + b"/>"
    return _before_signature(signed, element * max(1, count // per_element))


def text_flood(signed: bytes, size: int) -> bytes:
    """One text node of ``size`` bytes."""
    return _before_signature(signed, b"<x>" + b"t" * size + b"</x>")


def reference_flood(signed: bytes, count: int) -> bytes:
    """``count`` further references in SignedInfo, each to the whole document."""
    reference = (
        b'<ds:Reference URI=""><ds:DigestMethod '
        b'Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>'
        b"<ds:DigestValue>AAAA</ds:DigestValue></ds:Reference>"
    )
    return _inside_signature(signed, b"SignedInfo", reference * count, after=False)


def signed_info_flood(signed: bytes, size: int) -> bytes:
    """SignedInfo grown by ``size`` bytes of whitespace (which c14n keeps)."""
    return _inside_signature(signed, b"SignedInfo", b" " * size, after=False)


def _attacker_certificates(count: int) -> list[bytes]:
    """``count`` certificates from a key and CA of the attacker's own, each issuing the
    next, so no certificate's subject is unique enough to pick the leaf quickly."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    names = [
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"attacker {i}")])
        for i in range(count + 1)
    ]
    made = []
    for i in range(count):
        cert = (
            x509.CertificateBuilder()
            .subject_name(names[i + 1])
            .issuer_name(names[i])
            .public_key(key.public_key())
            .serial_number(i + 1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        made.append(cert.public_bytes(serialization.Encoding.DER))
    return made


def certificate_flood(signed: bytes, count: int) -> bytes:
    """``count`` attacker-made certificates added to X509Data, after the signer's own."""
    items = b"".join(
        b"<ds:X509Certificate>" + base64.b64encode(der) + b"</ds:X509Certificate>"
        for der in _attacker_certificates(count)
    )
    return _inside_signature(signed, b"X509Data", items, after=False)


HOSTILE: Final[dict[str, Callable[[bytes, int], bytes]]] = {
    "namespace flood": namespace_flood,
    "namespace spread": namespace_spread,
    "element flood": element_flood,
    "processing instruction flood": pi_flood,
    "attribute flood": attribute_flood,
    "attribute spread": attribute_spread,
    "text flood": text_flood,
    "reference flood": reference_flood,
    "SignedInfo flood": signed_info_flood,
    "certificate flood": certificate_flood,
}
"""Every generator that takes a size, by the name of its class."""
