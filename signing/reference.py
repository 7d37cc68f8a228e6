"""signxml as the reference implementation of XML-DSig verification.

``enveloped.verify_enveloped`` verifies the one shape we accept without signxml's copies
of the tree. signxml stays as the yardstick it is held to (the differential tests) and
as the path for the few inputs the direct check leaves alone, each of which signxml
already handles and none of which a conforming sender needs: a KeyValue next to the
certificate (signxml checks that both name the same key) and an element that is not the
root of its document. signxml verifies the first ds:Signature among the root's children,
so it is given only documents with one there: with more, it would not check the one
``structure`` chose.
"""

from __future__ import annotations

import binascii
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptographyInvalidSignature
from lxml import etree
from signxml.exceptions import (
    InvalidCertificate,
    InvalidDigest,
    InvalidInput,
    SignXMLException,
)
from signxml.verifier import SignatureConfiguration, XMLVerifier

from broker.errors import Reason
from signing.enveloped import SignedContent
from signing.errors import SignatureError
from signing.policy import VerificationPolicy
from signing.structure import DS_NS

__all__ = ["needs_reference", "verify_with_signxml"]

_SIGNATURE = f"{{{DS_NS}}}Signature"
_KEY_VALUES = (f"{{{DS_NS}}}KeyValue", "{http://www.w3.org/2009/xmldsig11#}DEREncodedKeyValue")


def needs_reference(root: etree._Element, signature: etree._Element) -> bool:
    """Whether ``root`` is one of the rare inputs verified by signxml (see the docstring)."""
    if root.getparent() is not None or root.getroottree().getroot() is not root:
        return True
    key_info = signature.find(f"{{{DS_NS}}}KeyInfo")
    return key_info is not None and any(key_info.find(tag) is not None for tag in _KEY_VALUES)


def _map_signxml_error(exc: Exception) -> SignatureError:
    if isinstance(exc, InvalidDigest):
        return SignatureError(Reason.DIGEST_MISMATCH, str(exc))
    if isinstance(exc, InvalidCertificate):
        return SignatureError(Reason.CERTIFICATE_EXPIRED, str(exc))
    if isinstance(exc, InvalidInput) and "forbidden by configuration" in str(exc):
        return SignatureError(Reason.ALGORITHM_NOT_ALLOWED, str(exc))
    return SignatureError(Reason.SIGNATURE_INVALID, str(exc) or type(exc).__name__)


def _config(policy: VerificationPolicy, at: datetime) -> SignatureConfiguration:
    return SignatureConfiguration(
        require_x509=True,
        location="./",
        expect_references=1,
        signature_methods=policy.signature_methods,
        digest_algorithms=policy.digest_algorithms,
        verification_time=at,
    )


def verify_with_signxml(
    root: etree._Element, leaf: x509.Certificate, policy: VerificationPolicy, at: datetime
) -> SignedContent:
    """Verify ``root``'s signature with signxml, told to use exactly ``leaf``.

    Raises ``SignatureError`` with the same codes as ``verify_enveloped``.
    """
    if len(root.findall(_SIGNATURE)) > 1:
        raise SignatureError(
            Reason.SIGNATURE_INVALID,
            "a signature with a KeyValue in KeyInfo is accepted only as the one "
            "ds:Signature among the root element's children",
        )
    try:
        # One XMLVerifier per call: it keeps per-call state on itself.
        result = XMLVerifier().verify(root, x509_cert=leaf, expect_config=_config(policy, at))
    except (
        SignXMLException,
        CryptographyInvalidSignature,
        etree.LxmlError,
        binascii.Error,
    ) as exc:
        raise _map_signxml_error(exc) from exc
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        # signxml trips over some malformed signatures with plain Python errors.
        raise SignatureError(Reason.SIGNATURE_INVALID, str(exc) or type(exc).__name__) from exc
    if isinstance(result, list) or result.signed_xml is None:
        raise SignatureError(Reason.SIGNATURE_INVALID, "the signed data is not one XML document")
    return SignedContent(result.signed_data, tree=result.signed_xml)
