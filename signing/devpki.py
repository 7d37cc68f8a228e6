"""The development PKI: one CA, certificates for Behördenkennungen, a CRL.

Development only: an operator deploys certificates from the agencies' own CA; this
module makes stand-ins for `make run`, the tests and the benchmarks.

It exists so that a developer machine, the tests and the demo have real certificates and
real revocation without an external CA. Layout under ``pki_dir``::

    ca/ca.crt  ca/ca.key          the CA (key mode 0600)
    trust/xbroker-dev-ca.crt      the trust store folder (CA certificates)
    crl/xbroker-dev-ca.crl        the CA's CRL, rewritten on every revocation
    parties/<file-id>.crt|.key    one certificate per party; file-id is the kennung
                                  with ':' replaced by '_' (psw:02000000 → psw_02000000)
    parties/<file-id>.enc.crt|.key  the party's encryption key (``.enc.2`` … after a
                                  rotation), what copies for it are sealed for

Party certificates carry keyUsage digitalSignature and nonRepudiation, basicConstraints
CA:FALSE, and the Behördenkennung as subject serialNumber and CN. Encryption
certificates carry the same subject and keyUsage keyEncipherment (RSA) or keyAgreement
(EC) only: a key that decrypts never signs.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from signing.certs import fingerprint, load_certificate, subject_kennung
from signing.errors import PkiError, SigningError
from signing.keyfiles import encryption_paths, file_id, next_encryption_paths, party_paths
from signing.trust import KeyPurpose

__all__ = [
    "CA_FILE_NAME",
    "DEV_CA_NAME",
    "CertificateInfo",
    "KeyType",
    "create_ca",
    "init_dev_pki",
    "issue",
    "issue_encryption",
    "issue_tls_certificate",
    "list_certificates",
    "revoke",
    "setup_ca",
    "write_crl",
]

KeyType = Literal["rsa", "ec"]
CA_FILE_NAME: Final = "xbroker-dev-ca"
_ORGANISATION: Final = "xbroker development PKI"
_CLOCK_SKEW: Final = timedelta(minutes=5)
CRL_DAYS: Final = 30
DEV_CA_NAME: Final = "xbroker development CA"


@dataclass(frozen=True)
class CertificateInfo:
    """One certificate of the development PKI, as ``list`` shows it."""

    path: Path
    subject: str
    kennung: str | None
    serial: str
    not_after: datetime
    fingerprint: str
    is_ca: bool
    revoked: bool
    purpose: KeyPurpose = KeyPurpose.SIGNATURE  # an encryption certificate, or not


def _new_key(key_type: KeyType) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise PkiError(f"unknown key type {key_type!r}; use 'rsa' or 'ec'")


def _write_private(path: Path, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _load_ca(
    ca_dir: Path,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]:
    try:
        cert = load_certificate(ca_dir / "ca.crt")
        key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), password=None)
    except (OSError, ValueError, SigningError) as exc:
        raise PkiError(f"no usable CA in {ca_dir}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise PkiError(f"the CA key in {ca_dir} is neither RSA nor ECDSA")
    return cert, key


def _key_usage(**granted: bool) -> x509.KeyUsage:
    """A KeyUsage with the named bits set and every other bit clear."""
    bits = {
        "digital_signature": False,
        "content_commitment": False,
        "key_encipherment": False,
        "data_encipherment": False,
        "key_agreement": False,
        "key_cert_sign": False,
        "crl_sign": False,
        "encipher_only": False,
        "decipher_only": False,
    }
    bits.update(granted)
    return x509.KeyUsage(**bits)


def _leaf(
    ca_cert: x509.Certificate,
    subject: x509.Name,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    days: int,
    usage: x509.KeyUsage,
) -> x509.CertificateBuilder:
    """What every end-entity certificate of this PKI carries: CA:FALSE, the key usage,
    key identifiers, and a validity that never outlives the CA."""
    now = datetime.now(UTC)
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
    )


def create_ca(
    ca_dir: Path, name: str, *, key_type: KeyType = "ec", days: int = 3650
) -> x509.Certificate:
    """Create a self-signed CA as ``ca_dir/ca.crt`` and ``ca_dir/ca.key``; refuse to overwrite."""
    if (ca_dir / "ca.crt").exists() or (ca_dir / "ca.key").exists():
        raise PkiError(f"a CA already exists in {ca_dir}")
    key = _new_key(key_type)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(ca_dir / "ca.key", key)
    _write_cert(ca_dir / "ca.crt", cert)
    return cert


def issue(
    ca_dir: Path,
    kennung: str,
    name: str,
    out_dir: Path,
    key_type: KeyType = "rsa",
    days: int = 730,
    *,
    tls_client: bool = False,
) -> tuple[Path, Path]:
    """Issue a signing certificate for ``kennung``; write ``<file-id>.crt|.key`` to ``out_dir``.

    With ``tls_client``, a TLS client certificate for the party instead (what a
    Fachverfahren presents to the XTA endpoint or the HTTP API): the same subject, so the
    Behördenkennung is found as for signatures, keyUsage digitalSignature only and
    extendedKeyUsage clientAuth, which TLS stacks that check the purpose require.

    An existing certificate of the same party in ``out_dir`` is replaced (key rotation);
    the old one stays valid until it expires or is revoked.
    """
    stem = file_id(kennung)
    ca_cert, ca_key = _load_ca(ca_dir)
    key = _new_key(key_type)
    usage = _key_usage(digital_signature=True, content_commitment=not tls_client)
    builder = _leaf(ca_cert, _party_subject(kennung, name), key.public_key(), days, usage)
    if tls_client:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = out_dir / f"{stem}.crt", out_dir / f"{stem}.key"
    _write_private(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def _party_subject(kennung: str, name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.SERIAL_NUMBER, kennung),
            x509.NameAttribute(NameOID.COMMON_NAME, kennung),
        ]
    )


def issue_encryption(
    ca_dir: Path,
    kennung: str,
    name: str,
    pki_dir: Path,
    key_type: KeyType = "rsa",
    days: int = 730,
) -> tuple[Path, Path]:
    """Issue an encryption certificate for ``kennung`` as its next encryption key.

    RSA (the default, for RSA-OAEP-256) gets keyUsage keyEncipherment, EC (for
    ECDH-ES+A256KW) keyAgreement. The party's earlier encryption keys are kept, so a
    rotation leaves two valid at once until the old one is removed.
    """
    ca_cert, ca_key = _load_ca(ca_dir)
    key = _new_key(key_type)
    usage = (
        _key_usage(key_encipherment=True) if key_type == "rsa" else _key_usage(key_agreement=True)
    )
    cert = _leaf(ca_cert, _party_subject(kennung, name), key.public_key(), days, usage).sign(
        ca_key, hashes.SHA256()
    )
    cert_path, key_path = next_encryption_paths(pki_dir, kennung)
    _write_private(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path


def _crl_path(crl_dir: Path) -> Path:
    return crl_dir / f"{CA_FILE_NAME}.crl"


def _revoked_serials(crl_dir: Path) -> dict[int, datetime]:
    path = _crl_path(crl_dir)
    if not path.exists():
        return {}
    try:
        crl = x509.load_pem_x509_crl(path.read_bytes())
    except ValueError as exc:
        raise PkiError(f"unreadable CRL {path}: {exc}") from exc
    return {entry.serial_number: entry.revocation_date_utc for entry in crl}


def write_crl(
    ca_dir: Path, crl_dir: Path, revoked: dict[int, datetime] | None = None, days: int = CRL_DAYS
) -> Path:
    """(Re)write the CA's CRL with a fresh validity; keep the serials already revoked."""
    ca_cert, ca_key = _load_ca(ca_dir)
    entries = _revoked_serials(crl_dir) | (revoked or {})
    now = datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - _CLOCK_SKEW)
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(int(now.timestamp() * 1000)), critical=False)
    )
    for serial, when in sorted(entries.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    crl = builder.sign(ca_key, hashes.SHA256())
    path = _crl_path(crl_dir)
    crl_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    tmp.replace(path)  # readers never see a half-written CRL
    return path


def revoke(ca_dir: Path, crl_dir: Path, cert: x509.Certificate | Path) -> Path:
    """Revoke a certificate issued by the CA in ``ca_dir``; return the rewritten CRL's path."""
    target = load_certificate(cert) if isinstance(cert, Path) else cert
    ca_cert, _ = _load_ca(ca_dir)
    if target.issuer != ca_cert.subject:
        raise PkiError("the certificate was not issued by this CA")
    return write_crl(ca_dir, crl_dir, {target.serial_number: datetime.now(UTC)})


def list_certificates(pki_dir: Path) -> list[CertificateInfo]:
    """The CA and every party certificate of the development PKI, CA first."""
    revoked = _revoked_serials(pki_dir / "crl")
    paths = [pki_dir / "ca" / "ca.crt", *sorted((pki_dir / "parties").glob("*.crt"))]
    infos = []
    for path in paths:
        if not path.exists():
            continue
        cert = load_certificate(path)
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        encrypts = usage.key_encipherment or usage.key_agreement
        infos.append(
            CertificateInfo(
                path=path,
                subject=cert.subject.rfc4514_string(),
                kennung=subject_kennung(cert),
                serial=f"{cert.serial_number:x}",
                not_after=cert.not_valid_after_utc,
                fingerprint=fingerprint(cert),
                is_ca=constraints.ca,
                revoked=cert.serial_number in revoked,
                purpose=KeyPurpose.ENCRYPTION if encrypts else KeyPurpose.SIGNATURE,
            )
        )
    return infos


def _needs_new_crl(crl_dir: Path) -> bool:
    path = _crl_path(crl_dir)
    if not path.exists():
        return True
    crl = x509.load_pem_x509_crl(path.read_bytes())
    next_update = crl.next_update_utc
    return next_update is None or next_update - datetime.now(UTC) < timedelta(days=CRL_DAYS / 2)


def setup_ca(
    pki_dir: Path,
    name: str = DEV_CA_NAME,
    *,
    key_type: KeyType = "ec",
    days: int = 3650,
) -> None:
    """Make ``pki_dir`` a working CA folder: the CA if absent, its trust copy, a fresh CRL."""
    ca_dir = pki_dir / "ca"
    if not (ca_dir / "ca.crt").exists():
        create_ca(ca_dir, name, key_type=key_type, days=days)
    trust_copy = pki_dir / "trust" / f"{CA_FILE_NAME}.crt"
    ca_pem = (ca_dir / "ca.crt").read_bytes()
    if not trust_copy.exists() or trust_copy.read_bytes() != ca_pem:
        trust_copy.parent.mkdir(parents=True, exist_ok=True)
        trust_copy.write_bytes(ca_pem)
    if _needs_new_crl(pki_dir / "crl"):
        write_crl(ca_dir, pki_dir / "crl")


def init_dev_pki(pki_dir: Path, parties: Sequence[tuple[str, str]]) -> None:
    """Create the development PKI if absent, add missing parties if present (idempotent).

    Parties get ECDSA P-256 signing keys (fast to make and to verify) and an RSA
    encryption key (RSA-OAEP-256, the default sealing profile). A party whose
    certificate has expired gets a new one; the CRL is refreshed when half its life is gone.
    """
    setup_ca(pki_dir)
    ca_dir = pki_dir / "ca"
    now = datetime.now(UTC)
    for kennung, name in parties:
        if not any(
            load_certificate(cert).not_valid_after_utc > now
            for cert, _ in encryption_paths(pki_dir, kennung)
        ):
            issue_encryption(ca_dir, kennung, name, pki_dir)
        cert_path, key_path = party_paths(pki_dir, kennung)
        present = cert_path.exists() and key_path.exists()
        if present and load_certificate(cert_path).not_valid_after_utc > now:
            continue
        issue(ca_dir, kennung, name, pki_dir / "parties", key_type="ec")


def issue_tls_certificate(
    ca_dir: Path,
    common_name: str,
    cert_path: Path,
    key_path: Path,
    *,
    purpose: Literal["server", "client"],
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    days: int = 730,
) -> x509.Certificate:
    """Issue a TLS certificate (ECDSA P-256) from the CA in ``ca_dir``.

    TLS identities are kept apart from the XML signing certificates of ``issue``: they carry
    extendedKeyUsage serverAuth or clientAuth, and a server certificate names its hosts in
    subjectAltName, which is all a TLS client checks. A client certificate's CN is what
    RabbitMQ's EXTERNAL login takes as the user name.
    """
    ca_cert, ca_key = _load_ca(ca_dir)
    key = _new_key("ec")
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORGANISATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    usage = (
        ExtendedKeyUsageOID.SERVER_AUTH if purpose == "server" else ExtendedKeyUsageOID.CLIENT_AUTH
    )
    builder = _leaf(
        ca_cert, subject, key.public_key(), days, _key_usage(digital_signature=True)
    ).add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ip_address(address)) for address in ip_addresses]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_private(key_path, key)
    _write_cert(cert_path, cert)
    return cert
