"""Small helpers on X.509 certificates: loading, fingerprints, the Behördenkennung.

A Behördenkennung (``prefix:kennung``, e.g. ``psw:02000000``) names an agency. The
development PKI writes it into the subject's serialNumber attribute and the CN; readers
look at serialNumber first, then at a CN that looks like a Behördenkennung.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from signing.errors import SigningError

__all__ = [
    "KENNUNG_PATTERN",
    "fingerprint",
    "load_certificate",
    "load_certificates",
    "subject_kennung",
]

KENNUNG_PATTERN: Final = re.compile(r"^[a-z0-9]+:[A-Za-z0-9._-]+$")


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the certificate's DER encoding, lower-case hex."""
    return cert.fingerprint(hashes.SHA256()).hex()


def load_certificates(path: Path) -> list[x509.Certificate]:
    """All certificates in a PEM file (several may follow each other) or one DER file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SigningError(f"cannot read certificate file {path}: {exc}") from exc
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise SigningError(f"no valid certificate in {path}: {exc}") from exc


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate in a PEM or DER file."""
    return load_certificates(path)[0]


def _attribute(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    for attribute in cert.subject.get_attributes_for_oid(oid):
        value = attribute.value
        text = value if isinstance(value, str) else value.decode("utf-8", "replace")
        if KENNUNG_PATTERN.match(text):
            return text
    return None


def subject_kennung(cert: x509.Certificate) -> str | None:
    """The Behördenkennung named in the certificate subject, if any."""
    return _attribute(cert, NameOID.SERIAL_NUMBER) or _attribute(cert, NameOID.COMMON_NAME)
