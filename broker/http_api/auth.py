"""Who is calling: a TLS client certificate or a bearer token, mapped to a Behördenkennung.

Tokens are never stored: the table holds the SHA-256 of each token (hex), so a leaked
tokens file opens nothing. A client certificate has already passed the TLS handshake
against the configured CA; here it must not be revoked (the CRL folder is read as for
signatures, so a revocation counts within a second, on open connections too), its
subject must name a Behördenkennung, and that agency must have registered exactly this
certificate in the directory.

The certificate reaches the app through the ASGI TLS extension
(``scope["extensions"]["tls"]["client_cert_chain"]``, PEM strings), which
`broker.http_api.server` fills in because uvicorn does not.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import tomllib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from starlette.requests import Request

from broker.errors import ConfigurationError
from broker.logs import event
from signing import SignatureError, TrustStore, VerificationPolicy, fingerprint, subject_kennung

__all__ = [
    "Authenticator",
    "CertificateCheck",
    "StandingCheck",
    "TokenTable",
    "client_certificate",
    "good_standing",
    "hash_token",
]

log = logging.getLogger("xbroker.api")

CertificateCheck = Callable[[str, str], bool]
"""(kennung, certificate fingerprint) → is it registered? (``Directory.certificate_registered``)"""

StandingCheck = Callable[[x509.Certificate], str | None]
"""A client certificate → None if it is in good standing now, else why not."""


def good_standing(
    trust: TrustStore,
    policy: VerificationPolicy = VerificationPolicy(),  # noqa: B008 (frozen)
) -> StandingCheck:
    """Chain and revocation of a client certificate, by the rules signatures follow.

    The TLS handshake has checked the chain once, when the connection was made; this
    runs per request, so a certificate revoked while a connection stays open is refused
    once the trust store has read the new CRL (its folder is looked at about once a
    second). A missing or stale CRL counts as ``policy`` says.
    """

    def check(certificate: x509.Certificate) -> str | None:
        try:
            trust.refresh_crls(time.monotonic())
            trust.validate(
                certificate,
                at=datetime.now(UTC),
                missing_crl=policy.missing_crl,
                stale_crl=policy.stale_crl,
            )
        except SignatureError as exc:
            return str(exc)
        return None

    return check


def hash_token(token: str) -> str:
    """What the tokens file stores for ``token``."""
    return hashlib.sha256(token.encode()).hexdigest()


class TokenTable:
    """SHA-256 of each token → the Behördenkennung it stands for."""

    def __init__(self, hashed: Mapping[str, str]) -> None:
        self._hashed = {digest.lower(): kennung for digest, kennung in hashed.items()}

    @classmethod
    def from_file(cls, path: Path) -> TokenTable:
        """Read ``[tokens] "<sha256 hex>" = "<kennung>"`` from a TOML file."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigurationError(f"{path}: cannot read the API tokens: {exc}") from exc
        tokens = data.get("tokens", {})
        if not isinstance(tokens, dict) or not all(
            isinstance(k, str) and len(k) == 64 and isinstance(v, str) for k, v in tokens.items()
        ):
            raise ConfigurationError(f"{path}: [tokens] maps SHA-256 hex digests to kennungen")
        return cls(tokens)

    def lookup(self, token: str) -> str | None:
        digest = hash_token(token)
        for known, kennung in self._hashed.items():
            if hmac.compare_digest(known, digest):
                return kennung
        return None


def client_certificate(request: Request) -> x509.Certificate | None:
    """The client certificate of the TLS connection, if one was presented."""
    tls = request.scope.get("extensions", {}).get("tls", {})
    chain = tls.get("client_cert_chain") or ()
    if not chain:
        return None
    return x509.load_pem_x509_certificate(str(chain[0]).encode())


class Authenticator:
    """Turns a request into the caller's Behördenkennung, or None."""

    def __init__(
        self,
        tokens: TokenTable,
        registered: CertificateCheck | None = None,
        standing: StandingCheck | None = None,
    ) -> None:
        self._tokens = tokens
        self._registered = registered
        self._standing = standing

    def __call__(self, request: Request) -> str | None:
        certificate = client_certificate(request)
        if certificate is not None:
            kennung = subject_kennung(certificate)
            if kennung is None:
                return None
            refused = self._standing(certificate) if self._standing is not None else None
            if refused is not None:
                event(
                    log,
                    "api.certificate_refused",
                    logging.WARNING,
                    kennung=kennung,
                    serial=f"{certificate.serial_number:x}",
                    reason=refused,
                )
                return None
            if self._registered is not None and not self._registered(
                kennung, fingerprint(certificate)
            ):
                return None
            return kennung
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._tokens.lookup(token.strip())
