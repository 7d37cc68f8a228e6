"""Enveloped XML-DSig signatures made with an agency's key and certificate.

The signature covers the whole document (one reference, URI ""), uses exclusive
canonicalization and SHA-256, and carries the signer's certificate (and any
intermediates) in KeyInfo, so a receiver needs nothing but its trust store. It is
appended as the last child of the root element, where ``Verifier`` expects it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from lxml import etree
from signxml.algorithms import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
)
from signxml.signer import XMLSigner

from signing.certs import fingerprint, load_certificate, load_certificates
from signing.errors import SigningError
from signing.parser import parse_untrusted

__all__ = ["PrivateKey", "Signer"]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_DS_SIGNATURE = "{http://www.w3.org/2000/09/xmldsig#}Signature"


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _signature_method(key: PrivateKey) -> SignatureMethod:
    if isinstance(key, rsa.RSAPrivateKey):
        return SignatureMethod.RSA_SHA256
    return SignatureMethod.ECDSA_SHA256


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

    def sign(self, doc: bytes | etree._Element) -> bytes:
        """Return ``doc`` with an enveloped signature appended to its root, as UTF-8 bytes."""
        root = parse_untrusted(doc) if isinstance(doc, bytes) else doc
        if root.find(f".//{_DS_SIGNATURE}") is not None or root.tag == _DS_SIGNATURE:
            raise SigningError("document already contains a ds:Signature")
        signer = XMLSigner(
            method=SignatureConstructionMethod.enveloped,
            signature_algorithm=self._method,
            digest_algorithm=DigestAlgorithm.SHA256,
            c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
        )
        signed = signer.sign(root, key=self._key, cert=[self.certificate, *self.chain])
        return etree.tostring(signed, xml_declaration=True, encoding="UTF-8")
