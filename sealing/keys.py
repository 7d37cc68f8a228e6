"""Encryption keys: the public one a message is sealed for, the private ones that open it.

A party's encryption key comes with an X.509 certificate, separate from its signing
certificate (`signing.KeyPurpose.ENCRYPTION`: keyEncipherment or keyAgreement). The
JWE names the key it was sealed for by its ``kid``, the JWK thumbprint of the public key
(RFC 7638, SHA-256): both sides compute it from the key alone, so no registry of key
ids is needed, and a party holding several keys (during a rotation) finds the one
that opens a copy by it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc.jwk import ECKey, RSAKey

from sealing.errors import SealingKeyError
from sealing.profile import KeyAlgorithm
from signing.certs import load_certificate
from signing.errors import SigningError

__all__ = ["JoseKey", "KeyRing", "RecipientKey", "key_id"]

JoseKey = RSAKey | ECKey
_MIN_RSA_BITS = 2048


def _jose_key(
    key: rsa.RSAPublicKey
    | rsa.RSAPrivateKey
    | ec.EllipticCurvePublicKey
    | ec.EllipticCurvePrivateKey,
) -> tuple[JoseKey, KeyAlgorithm]:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < _MIN_RSA_BITS:
            raise SealingKeyError(f"an RSA encryption key needs {_MIN_RSA_BITS} bits at least")
        return RSAKey.import_key(key), KeyAlgorithm.RSA_OAEP_256
    return ECKey.import_key(key), KeyAlgorithm.ECDH_ES_A256KW


def key_id(key: JoseKey) -> str:
    """The ``kid`` of a key: its JWK thumbprint (RFC 7638, SHA-256, base64url)."""
    return key.thumbprint()


@dataclass(frozen=True, slots=True)
class RecipientKey:
    """A public encryption key, from a certificate: what a copy is sealed for."""

    kid: str
    algorithm: KeyAlgorithm
    certificate: x509.Certificate
    jwk: JoseKey

    @classmethod
    def from_certificate(cls, certificate: x509.Certificate) -> RecipientKey:
        public = certificate.public_key()
        if not isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            raise SealingKeyError(
                f"certificate {certificate.serial_number:x} holds neither an RSA nor an EC key"
            )
        jwk, algorithm = _jose_key(public)
        return cls(key_id(jwk), algorithm, certificate, jwk)

    @classmethod
    def from_file(cls, path: Path) -> RecipientKey:
        try:
            return cls.from_certificate(load_certificate(path))
        except SigningError as exc:
            raise SealingKeyError(str(exc)) from exc


class KeyRing:
    """The private encryption keys one party holds, by ``kid``.

    Two keys at once are the normal state during a rotation: copies sealed for the old
    key still open until it is removed from the ring.
    """

    def __init__(self, keys: Iterable[JoseKey] = ()) -> None:
        self._keys: Mapping[str, JoseKey] = {key_id(k): k for k in keys}
        for kid, key in self._keys.items():
            if not key.is_private:
                raise SealingKeyError(f"key {kid} of a key ring is not a private key")

    def __len__(self) -> int:
        return len(self._keys)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def get(self, kid: str) -> JoseKey | None:
        return self._keys.get(kid)

    @classmethod
    def from_pem(cls, pems: Iterable[bytes]) -> KeyRing:
        keys = []
        for pem in pems:
            try:
                private = serialization.load_pem_private_key(pem, password=None)
            except (ValueError, TypeError) as exc:
                raise SealingKeyError(f"not a PEM private key: {exc}") from exc
            if not isinstance(private, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                raise SealingKeyError("an encryption key must be RSA or EC")
            keys.append(_jose_key(private)[0])
        return cls(keys)

    @classmethod
    def from_files(cls, paths: Iterable[Path]) -> KeyRing:
        pems = []
        for path in paths:
            try:
                pems.append(path.read_bytes())
            except OSError as exc:
                raise SealingKeyError(f"cannot read encryption key {path}: {exc}") from exc
        return cls.from_pem(pems)
