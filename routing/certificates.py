"""The certificates an agency registers: signing certificates by file or fingerprint,
encryption certificates by file; files read once and kept until they change."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from routing.agency import RegisteredCertificate
from routing.errors import DirectoryError

__all__ = ["CertificateFiles", "encryption_certificate", "signing_certificate"]


class CertificateFiles:
    """Certificate files as read, by path, size and modification time.

    Loading a directory of tens of thousands of agencies read and parsed one certificate
    file per agency each time; a reload, with few files changed, now reads only those
    (and a file several agencies share, once). A file that changed in place gets a new
    size or time and is read again.
    """

    def __init__(self) -> None:
        # by path as text: a reload looks up every agency's file, and hashing text is
        # cheaper than hashing a Path
        self._read: dict[str, tuple[tuple[int, int], RegisteredCertificate]] = {}

    def get(self, file: Path) -> RegisteredCertificate:
        """The certificate in ``file``; OSError or ValueError if it cannot be read."""
        name = str(file)
        stat = os.stat(name)
        stamp = (stat.st_mtime_ns, stat.st_size)
        known = self._read.get(name)
        if known is not None and known[0] == stamp:
            return known[1]
        cert = x509.load_pem_x509_certificate(file.read_bytes())
        digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
        registered = RegisteredCertificate(digest, cert, name)
        self._read[name] = (stamp, registered)
        return registered


def signing_certificate(
    path: Path, index: int, kennung: str, ref: str, base: Path, files: CertificateFiles
) -> RegisteredCertificate:
    if ref.startswith("sha256:"):
        digest = ref.removeprefix("sha256:").replace(":", "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise DirectoryError(
                f"{path}: agency[{index}] ({kennung}).certificates: bad fingerprint {ref!r}"
            )
        return RegisteredCertificate(digest, None, ref)
    file = base / ref  # an absolute ref stands for itself
    try:
        return files.get(file)
    except (OSError, ValueError) as exc:
        raise DirectoryError(
            f"{path}: agency[{index}] ({kennung}).certificates: cannot load {file}: {exc}"
        ) from exc


def encryption_certificate(
    where: str, ref: str, base: Path, files: CertificateFiles
) -> RegisteredCertificate:
    """An encryption certificate: a file (the key is needed, not only its fingerprint)
    whose keyUsage allows keyEncipherment or keyAgreement."""
    file = base / ref  # an absolute ref stands for itself
    try:
        registered = files.get(file)
    except (OSError, ValueError) as exc:
        raise DirectoryError(f"{where}.encryption: cannot load {file}: {exc}") from exc
    cert = registered.certificate
    assert cert is not None  # read from a file
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not (usage.key_encipherment or usage.key_agreement):
        raise DirectoryError(
            f"{where}.encryption: {file} is no encryption certificate (its keyUsage has "
            "neither keyEncipherment nor keyAgreement); make one with "
            "`xbroker pki issue KENNUNG NAME --encryption`"
        )
    return registered
