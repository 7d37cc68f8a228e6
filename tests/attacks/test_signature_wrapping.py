"""Signature wrapping corpus: a valid signature made to vouch for something else.

Each case starts from a correctly signed message and rearranges it the way published
XML-DSig wrapping attacks do. Every one must be rejected, with the code named here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, SignatureMethod
from signxml.signer import XMLSigner

from broker.errors import Reason
from signing import SignatureError, Signer, Verifier, parse_untrusted
from signing.keyfiles import party_paths

DS_NS = "http://www.w3.org/2000/09/xmldsig#"
DS = f"{{{DS_NS}}}"
DOC = b'<m:msg xmlns:m="urn:test"><m:body Id="b"><a>10</a></m:body></m:msg>'


def _root(signed: bytes) -> etree._Element:
    return parse_untrusted(signed)


def _signature(root: etree._Element) -> etree._Element:
    found = root.find(f"{DS}Signature")
    assert found is not None
    return found


def wrap_in_new_root(signed: bytes) -> bytes:
    return b"<evil>" + etree.tostring(_root(signed)) + b"</evil>"


def move_signed_body_into_wrapper(signed: bytes) -> bytes:
    # Classic XSW: the signed body moves into an unread wrapper, a forged body takes its place.
    root = _root(signed)
    body = root[0]
    wrapper = etree.SubElement(_signature(root), f"{DS}Object")
    wrapper.append(body)
    root.insert(0, etree.fromstring(b'<m:body xmlns:m="urn:test" Id="b"><a>99</a></m:body>'))
    return etree.tostring(root)


def move_signature_into_child(signed: bytes) -> bytes:
    root = _root(signed)
    root[0].append(_signature(root))
    return etree.tostring(root)


def add_unsigned_sibling(signed: bytes) -> bytes:
    root = _root(signed)
    root.append(etree.fromstring(b"<extra>unsigned</extra>"))
    return etree.tostring(root)


def add_unsigned_sibling_before_signed_content(signed: bytes) -> bytes:
    root = _root(signed)
    root.insert(0, etree.fromstring(b'<m:body xmlns:m="urn:test"><a>99</a></m:body>'))
    return etree.tostring(root)


def duplicate_signature(signed: bytes) -> bytes:
    root = _root(signed)
    root.append(etree.fromstring(etree.tostring(_signature(root))))
    return etree.tostring(root)


def comment_splits_signed_text(signed: bytes) -> bytes:
    # Same canonical form (comments are not signed), different text for a naive reader.
    return signed.replace(b"<a>10</a>", b"<a>1<!-- -->0</a>", 1)


def comment_before_root(signed: bytes) -> bytes:
    return signed.replace(b"<m:msg", b"<!-- unsigned --><m:msg", 1)


def processing_instruction_after_root(signed: bytes) -> bytes:
    return signed + b"<?route to=attacker?>"


def whitespace_in_signed_text(signed: bytes) -> bytes:
    return signed.replace(b"<a>10</a>", b"<a>10 </a>", 1)


def whitespace_in_reference_uri(signed: bytes) -> bytes:
    return signed.replace(b'URI=""', b'URI=" "', 1)


def whitespace_in_signed_info(signed: bytes) -> bytes:
    return signed.replace(b"<ds:SignedInfo>", b"<ds:SignedInfo>\n", 1)


def reference_to_xpointer(signed: bytes) -> bytes:
    return signed.replace(b'URI=""', b'URI="#xpointer(/)"', 1)


def second_reference(signed: bytes) -> bytes:
    root = _root(signed)
    signed_info = _signature(root).find(f"{DS}SignedInfo")
    assert signed_info is not None
    reference = signed_info.find(f"{DS}Reference")
    assert reference is not None
    signed_info.append(etree.fromstring(etree.tostring(reference)))
    return etree.tostring(root)


def xpath_filter_transform(signed: bytes) -> bytes:
    root = _root(signed)
    transforms = _signature(root).find(f".//{DS}Transforms")
    assert transforms is not None
    xpath = etree.SubElement(
        transforms, f"{DS}Transform", Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116"
    )
    etree.SubElement(xpath, f"{DS}XPath").text = "not(ancestor-or-self::m:body)"
    return etree.tostring(root)


def signature_as_root(signed: bytes) -> bytes:
    return etree.tostring(_signature(_root(signed)))


CORPUS: dict[str, tuple[Reason, Callable[[bytes], bytes]]] = {
    "signed message wrapped in a new root": (Reason.SIGNATURE_WRAPPING, wrap_in_new_root),
    "signed body moved into a wrapper": (Reason.SIGNATURE_WRAPPING, move_signed_body_into_wrapper),
    "signature moved into a child": (Reason.SIGNATURE_WRAPPING, move_signature_into_child),
    "unsigned sibling appended": (Reason.DIGEST_MISMATCH, add_unsigned_sibling),
    "unsigned sibling before content": (
        Reason.DIGEST_MISMATCH,
        add_unsigned_sibling_before_signed_content,
    ),
    "second signature": (Reason.SIGNATURE_WRAPPING, duplicate_signature),
    "comment splitting signed text": (Reason.SIGNATURE_WRAPPING, comment_splits_signed_text),
    "comment before the root": (Reason.SIGNATURE_WRAPPING, comment_before_root),
    "processing instruction after the root": (
        Reason.SIGNATURE_WRAPPING,
        processing_instruction_after_root,
    ),
    "whitespace added to signed text": (Reason.DIGEST_MISMATCH, whitespace_in_signed_text),
    "whitespace in the reference URI": (Reason.SIGNATURE_WRAPPING, whitespace_in_reference_uri),
    "whitespace added to SignedInfo": (Reason.SIGNATURE_INVALID, whitespace_in_signed_info),
    "reference to an XPointer": (Reason.SIGNATURE_WRAPPING, reference_to_xpointer),
    "second reference": (Reason.SIGNATURE_WRAPPING, second_reference),
    "XPath filter transform": (Reason.ALGORITHM_NOT_ALLOWED, xpath_filter_transform),
    "enveloping signature as root": (Reason.SIGNATURE_WRAPPING, signature_as_root),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_wrapping_attack_is_rejected(signer: Signer, verifier: Verifier, name: str) -> None:
    reason, attack = CORPUS[name]
    forged = attack(signer.sign(DOC))
    with pytest.raises(SignatureError) as caught:
        verifier.verify(parse_untrusted(forged), at=datetime.now(UTC))
    assert caught.value.reason is reason, caught.value.detail


def test_the_untouched_message_verifies(signer: Signer, verifier: Verifier) -> None:
    assert (
        verifier.verify(parse_untrusted(signer.sign(DOC)), at=datetime.now(UTC)).signed.findtext(
            ".//a"
        )
        == "10"
    )


def test_signature_over_an_id_instead_of_the_whole_document_is_wrapping(
    attack_pki: Path, verifier: Verifier
) -> None:
    cert, key = party_paths(attack_pki, "psw:02000000")
    signed = XMLSigner(
        signature_algorithm=SignatureMethod.ECDSA_SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    ).sign(parse_untrusted(DOC), key=key.read_bytes(), cert=cert.read_text(), reference_uri="#b")
    signed.append(etree.fromstring(b"<extra>unsigned sibling of the signed element</extra>"))
    with pytest.raises(SignatureError) as caught:
        verifier.verify(parse_untrusted(etree.tostring(signed)), at=datetime.now(UTC))
    assert caught.value.reason is Reason.SIGNATURE_WRAPPING
