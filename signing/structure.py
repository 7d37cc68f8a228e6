"""The shape a signature must have before any cryptography is spent on it.

Signature wrapping attacks move, duplicate or re-point signatures so that a valid
signature over one part of a document vouches for another. We verify one signature,
chosen by its position alone: the last ds:Signature among the root element's children,
where ``Signer`` appends it. It must have a single reference whose URI is "" (the whole
document), the enveloped-signature transform and no ds:Object payload. Every other
ds:Signature in the document (a standard's own document signature, say) is content:
the enveloped-signature transform takes out only the chosen one, so its digest covers
the others like any other element, and they are never verified or followed here.
What no such signature covers (comments, processing instructions outside the root) is
counted (``uncovered``) and left out of what is delivered. Algorithms are checked here
too, against the policy, so a forbidden algorithm is reported as such whatever else is
wrong with the signature.

The policy's size limits come first of all: SignedInfo's size is estimated (and the
estimate stops at the limit) before anything in it is read, and the certificates in
KeyInfo are counted before any is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, SignatureConstructionMethod, SignatureMethod

from broker.errors import Reason
from signing.certcache import CertificateCache, SignerCertificates, read_certificates
from signing.errors import SignatureError
from signing.policy import VerificationPolicy

__all__ = ["DS_NS", "SignatureShape", "inspect_signature"]

DS_NS: Final = "http://www.w3.org/2000/09/xmldsig#"
_SIGNATURE: Final = f"{{{DS_NS}}}Signature"
_ENVELOPED: Final = SignatureConstructionMethod.enveloped.value
# What signxml (and so ``enveloped``) canonicalizes a reference with that names no c14n.
IMPLIED_REFERENCE_C14N: Final = CanonicalizationMethod.CANONICAL_XML_1_1


def _ds(name: str) -> str:
    return f"{{{DS_NS}}}{name}"


@dataclass(frozen=True)
class SignatureShape:
    """What the structural check found: the signature, its method and its certificates."""

    signature: etree._Element
    method: SignatureMethod
    certificates: SignerCertificates

    @property
    def leaf(self) -> x509.Certificate:
        """The signer's own certificate."""
        return self.certificates.leaf

    @property
    def intermediates(self) -> tuple[x509.Certificate, ...]:
        """The other certificates KeyInfo carries, to build the chain with."""
        return self.certificates.intermediates


def _wrapping(detail: str) -> SignatureError:
    return SignatureError(Reason.SIGNATURE_WRAPPING, detail)


def _only_child(parent: etree._Element, name: str) -> etree._Element:
    found = parent.findall(_ds(name))
    if len(found) != 1:
        raise SignatureError(
            Reason.SIGNATURE_INVALID, f"expected one ds:{name}, found {len(found)}"
        )
    return found[0]


def _algorithm(element: etree._Element) -> str:
    return element.get("Algorithm") or ""


def _find_signature(root: etree._Element) -> etree._Element:
    if root.tag == _SIGNATURE:
        raise _wrapping("enveloping signatures are not accepted; the root must be the message")
    at_root = root.findall(_SIGNATURE)
    if not at_root:
        if next(root.iter(_SIGNATURE), None) is None:
            raise SignatureError(Reason.SIGNATURE_MISSING, "the document has no ds:Signature")
        raise _wrapping(
            "no ds:Signature among the root element's children; one inside the content "
            "is content, never the message's signature"
        )
    signature = at_root[-1]
    if signature.find(_ds("Object")) is not None:
        raise _wrapping("ds:Object content is not covered by an enveloped signature")
    return signature


def _check_signed_info_size(signed_info: etree._Element, limit: int) -> None:
    # Names, texts and attributes as written, give or take markup: enough to tell a
    # SignedInfo of one reference (under 2 KB) from one that would cost to canonicalize.
    size = 0
    for node in signed_info.iter():
        size += len(node.tag) if isinstance(node.tag, str) else 0
        size += len(node.text or "") + len(node.tail or "")
        size += sum(len(k) + len(v) for k, v in node.attrib.items())
        if size > limit:
            raise SignatureError(
                Reason.SIGNED_INFO_TOO_LARGE, f"ds:SignedInfo is larger than {limit} bytes"
            )


def _check_signed_info(signed_info: etree._Element, policy: VerificationPolicy) -> SignatureMethod:
    _check_signed_info_size(signed_info, policy.max_signed_info_bytes)
    c14n_uri = _algorithm(_only_child(signed_info, "CanonicalizationMethod"))
    if c14n_uri not in policy.c14n_uris:
        raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, f"canonicalization {c14n_uri!r}")
    method_uri = _algorithm(_only_child(signed_info, "SignatureMethod"))
    allowed = policy.signature_method_uris
    if method_uri not in allowed:
        raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, f"signature method {method_uri!r}")
    references = signed_info.findall(_ds("Reference"))
    if len(references) != 1:
        raise _wrapping(f'{len(references)} references; exactly one (URI "") is allowed')
    reference = references[0]
    if reference.get("URI") != "":
        raise _wrapping(f'reference URI {reference.get("URI")!r}; only "" (whole document)')
    _check_transforms(reference, policy)
    digest_uri = _algorithm(_only_child(reference, "DigestMethod"))
    if digest_uri not in policy.digest_uris:
        raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, f"digest {digest_uri!r}")
    return allowed[method_uri]


def _check_transforms(reference: etree._Element, policy: VerificationPolicy) -> None:
    transforms = reference.find(_ds("Transforms"))
    uris = [] if transforms is None else [_algorithm(t) for t in transforms]
    c14n = policy.c14n_uris
    for uri in uris:
        if uri != _ENVELOPED and uri not in c14n:
            raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, f"transform {uri!r}")
    if uris.count(_ENVELOPED) != 1:
        raise SignatureError(
            Reason.SIGNATURE_INVALID, "the enveloped-signature transform is required"
        )
    if len(uris) == 1 and IMPLIED_REFERENCE_C14N not in policy.c14n_methods:
        raise SignatureError(
            Reason.ALGORITHM_NOT_ALLOWED,
            "the reference names no canonicalization, which means "
            f"{IMPLIED_REFERENCE_C14N.value!r}",
        )
    if len(uris) > 2:
        # The enveloped transform yields a node set and a canonicalization turns it into
        # octets; a second canonicalization has no node set left to work on.
        raise SignatureError(Reason.SIGNATURE_INVALID, "at most one canonicalization transform")


def _certificate_texts(signature: etree._Element, limit: int) -> tuple[str, ...]:
    key_info = signature.find(_ds("KeyInfo"))
    if key_info is None:
        return ()
    path = f"{_ds('X509Data')}/{_ds('X509Certificate')}"
    texts: list[str] = []
    for element in key_info.iterfind(path):
        if len(texts) == limit:
            raise SignatureError(
                Reason.TOO_MANY_CERTIFICATES, f"KeyInfo carries more than {limit} certificates"
            )
        texts.append(element.text or "")
    return tuple(texts)


def _check_key(method: SignatureMethod, cert: x509.Certificate, policy: VerificationPolicy) -> None:
    key = cert.public_key()
    if method.name.startswith("ECDSA_"):
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, "ECDSA method with a non-EC key")
        if key.curve.name not in policy.ec_curves:
            raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, f"curve {key.curve.name}")
        return
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, "RSA method with a non-RSA key")
    if key.key_size < policy.min_rsa_bits:
        raise SignatureError(Reason.ALGORITHM_NOT_ALLOWED, f"RSA key of {key.key_size} bits")


def inspect_signature(
    root: etree._Element,
    policy: VerificationPolicy,
    certificates: CertificateCache | None = None,
) -> SignatureShape:
    """Check the signature's shape and algorithms; raise ``SignatureError`` if unacceptable."""
    signature = _find_signature(root)
    method = _check_signed_info(_only_child(signature, "SignedInfo"), policy)
    texts = _certificate_texts(signature, policy.max_certificates)
    found = read_certificates(texts) if certificates is None else certificates.get(texts)
    _check_key(method, found.leaf, policy)
    return SignatureShape(signature, method, found)
