"""Enveloped XML-DSig signatures made with an agency's key and certificate.

The signature covers the whole document (one reference, URI ""), uses exclusive
canonicalization and SHA-256, and carries the signer's certificate (and any
intermediates) in KeyInfo, so a receiver needs nothing but its trust store. It is
appended as the last child of the root element, where ``Verifier`` expects it: the last
ds:Signature among the root's children. A ds:Signature the document already carries
(a standard's own document signature) stays where it is, as content the new signature
covers.

Every signature we make has this one shape, so it is built from a template rather than
by a generic XML-DSig library: the document is canonicalized once for the digest, the
SignedInfo is text with the digest filled in (already in exclusive canonical form, which
depends on nothing around it), and one private-key operation signs it. KeyInfo is built
once per signer. signxml, xmlsec1 and our ``Verifier`` all verify the result (tests).
"""

from __future__ import annotations

import base64
import copy
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod

from signing.certs import fingerprint, load_certificate, load_certificates
from signing.errors import SigningError
from signing.parser import parse_untrusted
from signing.structure import DS_NS

__all__ = ["PrivateKey", "Signer"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_DS_SIGNATURE: Final = f"{{{DS_NS}}}Signature"
_ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_EXC_C14N: Final = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0.value
# SignedInfo in exclusive canonical form: the bytes that are signed. Inside the
# Signature the same element is written without its own namespace declaration (the
# Signature declares ds:); exclusive c14n of it there gives these bytes again.
_SIGNED_INFO: Final = (
    '<ds:SignedInfo{xmlns}><ds:CanonicalizationMethod Algorithm="' + _EXC_C14N + '">'
    '</ds:CanonicalizationMethod><ds:SignatureMethod Algorithm="{method}">'
    '</ds:SignatureMethod><ds:Reference URI=""><ds:Transforms><ds:Transform Algorithm="'
    + _ENVELOPED
    + '"></ds:Transform><ds:Transform Algorithm="'
    + _EXC_C14N
    + '"></ds:Transform></ds:Transforms><ds:DigestMethod Algorithm="'
    + DigestAlgorithm.SHA256.value
    + '"></ds:DigestMethod><ds:DigestValue>{digest}</ds:DigestValue></ds:Reference>'
    "</ds:SignedInfo>"
)
_XMLNS_DS: Final = f' xmlns:ds="{DS_NS}"'


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _signature_method(key: PrivateKey) -> SignatureMethod:
    if isinstance(key, rsa.RSAPrivateKey):
        return SignatureMethod.RSA_SHA256
    return SignatureMethod.ECDSA_SHA256


def _key_info(certificates: Sequence[x509.Certificate]) -> str:
    def body(cert: x509.Certificate) -> str:
        text = base64.b64encode(cert.public_bytes(Encoding.DER)).decode("ascii")
        lines = [text[i : i + 64] for i in range(0, len(text), 64)]
        return "\n".join(lines) + "\n"

    items = "".join(
        f"<ds:X509Certificate>{body(cert)}</ds:X509Certificate>" for cert in certificates
    )
    return f"<ds:KeyInfo><ds:X509Data>{items}</ds:X509Data></ds:KeyInfo>"


def _document(doc: bytes | etree._Element) -> etree._Element:
    if isinstance(doc, bytes):
        return parse_untrusted(doc)
    # A copy: the caller's element stays as it was, and becomes the root of its own
    # document (the namespaces it uses come along), as what is signed must be.
    root = copy.deepcopy(doc)
    root.tail = None
    return root


class Signer:
    """Signs XML documents as one party: a private key and its certificate chain."""

    def __init__(
        self,
        key: PrivateKey,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate] = (),
    ) -> None:
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SigningError("only RSA and ECDSA keys can sign")
        if _spki(key.public_key()) != _spki(certificate.public_key()):
            raise SigningError("the private key does not belong to the certificate")
        self._key = key
        self.certificate = certificate
        self.chain: tuple[x509.Certificate, ...] = tuple(chain)
        self.fingerprint = fingerprint(certificate)
        self._method = _signature_method(key)
        self._key_info = _key_info([certificate, *self.chain])

    @classmethod
    def from_files(cls, key: Path, cert: Path, chain: Sequence[Path] = ()) -> Signer:
        """Load an unencrypted PEM private key, its certificate and optional intermediates."""
        try:
            loaded = load_pem_private_key(key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise SigningError(f"cannot load private key {key}: {exc}") from exc
        if not isinstance(loaded, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SigningError(f"{key} holds neither an RSA nor an ECDSA key")
        intermediates = [c for path in chain for c in load_certificates(path)]
        return cls(loaded, load_certificate(cert), intermediates)

    def _signature_value(self, signed_info: bytes) -> bytes:
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())
        # XML-DSig wants r || s, each as long as the curve's order, not DER.
        r, s = decode_dss_signature(self._key.sign(signed_info, ec.ECDSA(hashes.SHA256())))
        size = (self._key.key_size + 7) // 8
        return r.to_bytes(size) + s.to_bytes(size)

    def sign(self, doc: bytes | etree._Element) -> bytes:
        """Return ``doc`` with an enveloped signature appended to its root, as UTF-8 bytes."""
        return self._sign_root(_document(doc))

    def sign_built(self, root: etree._Element) -> bytes:
        """Like :meth:`sign`, for a document built to be signed and handed over: its root
        is signed in place, not copied first (the receipts' path, once per message)."""
        if root.getparent() is not None:
            raise SigningError("only the root of a document of its own is signed in place")
        return self._sign_root(root)

    def _sign_root(self, root: etree._Element) -> bytes:
        if root.tag == _DS_SIGNATURE:
            raise SigningError("the document is a ds:Signature, not a message")
        # Without comments: a reference with URI "" never covers them (signing.uncovered).
        canonical = etree.tostring(root, method="c14n", exclusive=True, with_comments=False)
        digest = base64.b64encode(hashlib.sha256(canonical).digest()).decode("ascii")
        fields = {"method": self._method.value, "digest": digest}
        signed_info = _SIGNED_INFO.format(xmlns=_XMLNS_DS, **fields)
        value = base64.b64encode(self._signature_value(signed_info.encode("utf-8")))
        signature = (
            f'<ds:Signature xmlns:ds="{DS_NS}">{_SIGNED_INFO.format(xmlns="", **fields)}'
            f"<ds:SignatureValue>{value.decode('ascii')}</ds:SignatureValue>"
            f"{self._key_info}</ds:Signature>"
        )
        root.append(etree.fromstring(signature))
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8")
