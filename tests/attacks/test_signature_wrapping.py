"""Signature wrapping corpus: a valid signature made to vouch for something else.

Each case starts from a correctly signed message and rearranges it the way published
XML-DSig wrapping attacks do. Every one must be rejected, with the code named here.
The signature verified is the last ds:Signature among the root's children; any other is
content its digest covers, so the cases include a message that carries a signature of
its own. What no signature covers (comments, processing instructions outside the root)
changes nothing that is signed: such a message is accepted and delivered without it.
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
from signing.uncovered import Uncovered, covered_only

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


def forged_signature_before_the_signature(signed: bytes) -> bytes:
    root = _root(signed)
    forged = etree.fromstring(etree.tostring(_signature(root)))
    digest = forged.find(f".//{DS}DigestValue")
    assert digest is not None
    digest.text = "AAAA" + (digest.text or "")[4:]
    root.insert(len(root) - 1, forged)
    return etree.tostring(root)


def forged_signature_after_the_signature(signed: bytes) -> bytes:
    root = _root(signed)
    forged = etree.fromstring(etree.tostring(_signature(root)))
    value = forged.find(f"{DS}SignatureValue")
    assert value is not None
    value.text = "AAAA" + (value.text or "")[4:]
    root.append(forged)
    return etree.tostring(root)


def signature_moved_before_content_junk_after(signed: bytes) -> bytes:
    root = _root(signed)
    root.insert(0, _signature(root))
    root.append(etree.fromstring(f'<ds:Signature xmlns:ds="{DS_NS}"/>'.encode()))
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
    # The copy is the last at the root and is verified; its digest covers the original.
    "second signature": (Reason.DIGEST_MISMATCH, duplicate_signature),
    "forged signature at the root before the signature": (
        Reason.DIGEST_MISMATCH,
        forged_signature_before_the_signature,
    ),
    "forged signature at the root after the signature": (
        Reason.SIGNATURE_INVALID,
        forged_signature_after_the_signature,
    ),
    "signature moved first, an empty one last": (
        Reason.SIGNATURE_INVALID,
        signature_moved_before_content_junk_after,
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


UNCOVERED: dict[str, tuple[Callable[[bytes], bytes], Uncovered]] = {
    "comment splitting signed text": (comment_splits_signed_text, Uncovered(comments=1)),
    "comment before the root": (comment_before_root, Uncovered(comments=1)),
    "processing instruction after the root": (
        processing_instruction_after_root,
        Uncovered(instructions=1),
    ),
}


@pytest.mark.parametrize("name", sorted(UNCOVERED))
def test_what_no_signature_covers_is_counted_and_left_out(
    signer: Signer, verifier: Verifier, name: str
) -> None:
    change, counted = UNCOVERED[name]
    signed = signer.sign(DOC)
    root = parse_untrusted(change(signed))
    verified = verifier.verify(root, at=datetime.now(UTC))
    assert verified.uncovered == counted
    delivered = covered_only(root)
    assert b"<!--" not in delivered and b"<?route" not in delivered
    assert b"<a>10</a>" in delivered  # what a reader sees is what was signed
    again = verifier.verify(parse_untrusted(delivered), at=datetime.now(UTC))
    assert again.uncovered == Uncovered()
    assert again.signed_data == verified.signed_data


def _signature_over_body(attack_pki: Path) -> etree._Element:
    """A valid signature by a trusted key over the body alone (``#b``)."""
    cert, key = party_paths(attack_pki, "psw:02000000")
    signed = XMLSigner(
        signature_algorithm=SignatureMethod.ECDSA_SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    ).sign(parse_untrusted(DOC), key=key.read_bytes(), cert=cert.read_text(), reference_uri="#b")
    return _signature(signed)


def _with_content_signature(attack_pki: Path) -> bytes:
    """DOC with a signature in its content whose reference points outside its subtree."""
    root = parse_untrusted(DOC)
    etree.SubElement(root, "{urn:test}attachment").append(_signature_over_body(attack_pki))
    return etree.tostring(root)


def test_a_content_signature_is_content_the_signature_covers(
    attack_pki: Path, signer: Signer, verifier: Verifier
) -> None:
    signed = signer.sign(_with_content_signature(attack_pki))
    verified = verifier.verify(parse_untrusted(signed), at=datetime.now(UTC))
    assert verified.signed.findtext(".//a") == "10"
    assert verified.signed.find(f"{{urn:test}}attachment/{DS}Signature") is not None


def test_a_changed_body_beside_a_content_signature_is_a_digest_mismatch(
    attack_pki: Path, signer: Signer, verifier: Verifier
) -> None:
    # The content signature still covers nothing the broker checks: the body changes.
    forged = signer.sign(_with_content_signature(attack_pki)).replace(b"<a>10</a>", b"<a>99</a>")
    with pytest.raises(SignatureError) as caught:
        verifier.verify(parse_untrusted(forged), at=datetime.now(UTC))
    assert caught.value.reason is Reason.DIGEST_MISMATCH


def test_a_content_signature_left_last_at_the_root_is_not_the_signature(
    attack_pki: Path, signer: Signer, verifier: Verifier
) -> None:
    # A trusted signature over the body alone stays at the root; the whole-document
    # signature moves into content, so the one over the body is the last at the root.
    root = parse_untrusted(DOC)
    root.append(_signature_over_body(attack_pki))
    signed = parse_untrusted(signer.sign(root))
    body = signed.find("{urn:test}body")
    assert body is not None
    body.append(signed[-1])
    assert signed[-1].tag == f"{DS}Signature"
    with pytest.raises(SignatureError) as caught:
        verifier.verify(parse_untrusted(etree.tostring(signed)), at=datetime.now(UTC))
    assert caught.value.reason is Reason.SIGNATURE_WRAPPING
