"""Verify the one signature shape we accept directly on the parsed tree, once.

``structure.inspect_signature`` has pinned the shape: one ds:Signature, a child of the
root, one Reference with URI "", the enveloped-signature transform and at most one
canonicalization, algorithms from the policy. For that shape the whole of XML-DSig is
two checks, done here with lxml and cryptography and nothing else:

1. SignatureValue over the canonical SignedInfo (canonicalized where it stands, so the
   ancestors' namespaces count as they must for inclusive c14n), with the signer's key;
2. the reference digest over the canonical document without its Signature.

The steps and their order are those of signxml (schema check of the Signature, then the
signature, then the digest, references read from the canonical SignedInfo that was
verified), so both give the same decision; ``tests/test_fastpath_differential.py``
holds them to it. Check 1 comes before any work on the content: SignedInfo is small
(the structural check bounds it), so a forged signature costs one small c14n and one
public-key operation, never a pass over the document.

What they do not share is signxml's copying: it serialises and re-parses the tree for
every step. Here the tree is not copied at all: the Signature is taken out of it for the
canonicalization, as the enveloped-signature transform says, and put back. What was
signed is then the tree parsed from the canonical bytes, as signxml returns it, because
only that tree says exactly what the bytes say: exclusive c14n leaves out namespace
declarations that no name uses, so such a declaration is not covered by the signature,
yet in the received tree it would decide how a prefix in content (an ``xsi:type``
value, say) resolves.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureMethod,
    digest_algorithm_implementations,
)
from signxml.processor import get_schema

from broker.errors import Reason
from signing.errors import SignatureError
from signing.parser import parse_canonical
from signing.policy import VerificationPolicy
from signing.structure import DS_NS, IMPLIED_REFERENCE_C14N

__all__ = ["SignedContent", "canonicalize", "enveloped_removed", "verify_enveloped"]

_EXCLUSIVE_PREFIX: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
_EC_NS: Final = "http://www.w3.org/2001/10/xml-exc-c14n#"
_DSIG_SCHEMA: Final = "xmldsig1-schema.xsd"
_C14N_BY_URI: Final = {method.value: method for method in CanonicalizationMethod}


def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


class SignedContent:
    """What a reference covers: the document without its Signature, as bytes and as tree.

    The tree is parsed from the bytes when it is first asked for, so that a caller can
    let the received tree go before: a large message then never has both trees at once
    (each is about six times the size of the message, docs/performance.md).
    """

    __slots__ = ("_first_line", "_tree", "canonical")

    def __init__(
        self, canonical: bytes, *, first_line: int = 1, tree: etree._Element | None = None
    ) -> None:
        self.canonical = canonical
        self._first_line = first_line
        self._tree = tree

    @property
    def tree(self) -> etree._Element:
        if self._tree is None:
            # Blank lines in front of the root put its elements on the lines they have in
            # the message (unless a start tag there spanned lines), so validation reports
            # point at the sender's lines, not at those of the canonical form.
            self._tree = parse_canonical(b"\n" * (self._first_line - 1) + self.canonical)
        return self._tree


def _invalid(detail: str) -> SignatureError:
    return SignatureError(Reason.SIGNATURE_INVALID, detail)


def canonicalize(
    node: etree._Element, method: CanonicalizationMethod, prefixes: list[str] | None = None
) -> bytes:
    """Canonical bytes of ``node`` in its document context, as XML-DSig's c14n methods say.

    Raises ``SignatureError`` where libxml2 cannot canonicalize the node (a relative
    namespace URI, for one).
    """
    try:
        return etree.tostring(
            node,
            method="c14n",
            exclusive=method.value.startswith(_EXCLUSIVE_PREFIX),
            with_comments=method.value.endswith("#WithComments"),
            inclusive_ns_prefixes=prefixes,
        )
    except etree.C14NError as exc:
        raise _invalid(f"cannot canonicalize: {exc}") from exc


def _inclusive_prefixes(method_element: etree._Element) -> list[str] | None:
    found = method_element.find(f"{{{_EC_NS}}}InclusiveNamespaces[@PrefixList]")
    return None if found is None else (found.get("PrefixList") or "").split(" ")


def _required(parent: etree._Element, name: str) -> etree._Element:
    found = parent.find(_ds(name))
    if found is None:
        raise _invalid(f"ds:{name} is missing")
    return found


def _decode(element: etree._Element, what: str) -> bytes:
    # Lenient like signxml (whitespace and line breaks inside base64 are common).
    try:
        return base64.b64decode(element.text or "")
    except ValueError as exc:
        raise _invalid(f"{what} is not base64: {exc}") from exc


def _check_schema(signature: etree._Element) -> None:
    schema = get_schema(_DSIG_SCHEMA)
    if not schema.validate(signature):
        raise _invalid(f"ds:Signature does not follow the XML-DSig schema: {schema.error_log}")


def _dss_signature(raw: bytes, key: ec.EllipticCurvePublicKey) -> bytes:
    # XML-DSig carries ECDSA as r || s, each padded to the curve's byte length.
    half = (key.key_size + 7) // 8
    if len(raw) != 2 * half:
        raise _invalid(f"expected {2 * half} byte ECDSA SignatureValue, got {len(raw)}")
    return encode_dss_signature(int.from_bytes(raw[:half]), int.from_bytes(raw[half:]))


def _check_signature_value(
    key: CertificatePublicKeyTypes, method: SignatureMethod, raw: bytes, signed_info: bytes
) -> None:
    digest: hashes.HashAlgorithm = digest_algorithm_implementations[method]()
    try:
        if method.name.startswith("ECDSA_") and isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(_dss_signature(raw, key), signed_info, ec.ECDSA(digest))
        elif method.name.startswith("RSA_") and isinstance(key, rsa.RSAPublicKey):
            key.verify(raw, signed_info, padding.PKCS1v15(), digest)
        elif method.name.startswith("SHA") and isinstance(key, rsa.RSAPublicKey):
            pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)
            key.verify(raw, signed_info, pss, digest)
        else:
            raise _invalid(f"signature method {method.name} does not fit the signer's key")
    except InvalidSignature as exc:
        raise _invalid("SignatureValue does not verify with the signer's key") from exc


@contextmanager
def enveloped_removed(signature: etree._Element) -> Iterator[etree._Element]:
    """The document without ``signature``, as the enveloped-signature transform sees it,
    for the duration of the block; afterwards the document is as it was.

    lxml's ``remove`` takes an element's tail (the text that follows it) along; that
    text belongs to the parent and is covered by the digest, so it is handed over first.
    """
    parent = signature.getparent()
    if parent is None:
        raise _invalid("an enveloped signature needs a parent element")
    index = parent.index(signature)
    previous = signature.getprevious()
    tail, before = signature.tail, (parent.text if previous is None else previous.tail)
    if tail is not None:
        if previous is None:
            parent.text = (before or "") + tail
        else:
            previous.tail = (before or "") + tail
        signature.tail = None
    parent.remove(signature)
    try:
        yield parent
    finally:
        if previous is None:
            parent.text = before
        else:
            previous.tail = before
        parent.insert(index, signature)
        signature.tail = tail


def _reference(verified_signed_info: bytes) -> etree._Element:
    # Read the reference from the canonical SignedInfo that was verified, never from the
    # tree: only what the signature covers may steer the digest check.
    signed_info = parse_canonical(verified_signed_info)
    references = signed_info.findall(_ds("Reference"))
    if len(references) != 1:
        raise _invalid(f"expected one reference, found {len(references)}")
    return references[0]


def _reference_c14n(reference: etree._Element) -> tuple[CanonicalizationMethod, list[str] | None]:
    transforms = reference.find(_ds("Transforms"))
    for transform in () if transforms is None else transforms.iterfind(_ds("Transform")):
        method = _C14N_BY_URI.get(transform.get("Algorithm") or "")
        if method is not None:
            return method, _inclusive_prefixes(transform)
    # signxml canonicalizes a reference without a c14n transform with C14N 1.1, which
    # lxml renders as C14N 1.0; we follow it, so both implementations digest the same bytes.
    return IMPLIED_REFERENCE_C14N, None


def _digest_algorithm(reference: etree._Element, policy: VerificationPolicy) -> DigestAlgorithm:
    uri = _required(reference, "DigestMethod").get("Algorithm")
    try:
        algorithm = DigestAlgorithm(uri)
    except ValueError as exc:
        raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, f"digest {uri!r}") from exc
    if algorithm not in policy.digest_algorithms:
        raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, f"digest {uri!r}")
    return algorithm


def verify_enveloped(
    root: etree._Element,
    signature: etree._Element,
    method: SignatureMethod,
    key: CertificatePublicKeyTypes,
    policy: VerificationPolicy,
) -> SignedContent:
    """Verify the enveloped ``signature`` (a child of the document root ``root``) with ``key``.

    ``inspect_signature`` must have accepted the shape. Returns what the reference covers;
    raises ``SignatureError`` (``signature-invalid``, ``digest-mismatch``,
    ``algorithm-not-allowed``). ``root`` is as it was when this returns or raises.
    """
    _check_schema(signature)
    signed_info = _required(signature, "SignedInfo")
    c14n_element = _required(signed_info, "CanonicalizationMethod")
    try:
        c14n = CanonicalizationMethod(c14n_element.get("Algorithm"))
    except ValueError as exc:
        raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, "unknown canonicalization") from exc
    signed_info_c14n = canonicalize(signed_info, c14n, _inclusive_prefixes(c14n_element))
    raw = _decode(_required(signature, "SignatureValue"), "SignatureValue")
    _check_signature_value(key, method, raw, signed_info_c14n)

    reference = _reference(signed_info_c14n)
    expected = _decode(_required(reference, "DigestValue"), "DigestValue")
    algorithm = _digest_algorithm(reference, policy)
    ref_c14n, prefixes = _reference_c14n(reference)
    with enveloped_removed(signature) as content:
        canonical = canonicalize(content, ref_c14n, prefixes)
    hasher = hashes.Hash(digest_algorithm_implementations[algorithm]())
    hasher.update(canonical)
    if hasher.finalize() != expected:
        raise SignatureError(Reason.DIGEST_MISMATCH, 'the reference digest (URI "") does not match')
    line = root.sourceline
    return SignedContent(canonical, first_line=line if isinstance(line, int) and line > 1 else 1)
