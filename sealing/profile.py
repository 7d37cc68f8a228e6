"""The sealing profile: which JOSE algorithms, which serialisation, which limits.

FIT-Connect's profile is the default: the content key is wrapped with RSA-OAEP-256 and
the content encrypted with A256GCM, in the compact serialisation, without compression.
An EC key (P-256, P-384, P-521) wraps it with ECDH-ES+A256KW instead: the algorithm
follows from the recipient's key, so a party chooses by the key it registers. Nothing
else is accepted when a seal is opened: no other key wrapping (no RSA1_5, no "dir", no
password-based one), no other content encryption, and no ``zip`` (a compressed plaintext
would escape the size limits), whatever the JWE header asks for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from joserfc.jwe import JWERegistry

__all__ = [
    "CONTENT_ENCRYPTION",
    "SEALED_CONTENT_TYPE",
    "KeyAlgorithm",
    "SealLimits",
]

SEALED_CONTENT_TYPE: Final = "application/jose"
"""The media type of a JWE in the compact serialisation (RFC 7515, section 9.2.1)."""

CONTENT_ENCRYPTION: Final = "A256GCM"

# Room in a compact JWE beside its ciphertext: the protected header, the wrapped key
# (an RSA-8192 key wraps into 1,366 characters), the IV, the tag and four dots.
_HEADER_BYTES: Final = 2048
_WRAPPED_KEY_BYTES: Final = 2048
_ENVELOPE_BYTES: Final = _HEADER_BYTES + _WRAPPED_KEY_BYTES + 64 + 64 + 4


class KeyAlgorithm(StrEnum):
    """How the content key is wrapped for the recipient (the JWE ``alg``)."""

    RSA_OAEP_256 = "RSA-OAEP-256"
    ECDH_ES_A256KW = "ECDH-ES+A256KW"


@dataclass(frozen=True, slots=True)
class SealLimits:
    """Bounds on what is opened: the plaintext, and the sealed form that carries it.

    A256GCM adds no padding and compression is refused, so the ciphertext is exactly as
    long as the plaintext; its base64url form in the compact serialisation is 4/3 of it.
    The sealed size is refused before anything is decoded or decrypted, the plaintext's
    once more after decrypting.
    """

    max_plaintext_bytes: int = 10 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_plaintext_bytes < 1:
            raise ValueError("max_plaintext_bytes must be positive")

    @property
    def max_ciphertext_chars(self) -> int:
        return math.ceil(self.max_plaintext_bytes / 3) * 4

    @property
    def max_sealed_bytes(self) -> int:
        return self.max_ciphertext_chars + _ENVELOPE_BYTES

    def registry(self) -> JWERegistry:
        """A joserfc registry that allows the profile only, under these limits."""
        return _registry_class(self.max_ciphertext_chars)(
            algorithms=[*(a.value for a in KeyAlgorithm), CONTENT_ENCRYPTION],
            strict_check_header=True,
        )


def _registry_class(max_ciphertext_chars: int) -> type[JWERegistry]:
    # joserfc keeps its size limits as class attributes: one subclass per bound.
    return type(
        "SealRegistry",
        (JWERegistry,),
        {
            "max_protected_header_length": _HEADER_BYTES,
            "max_encrypted_key_length": _WRAPPED_KEY_BYTES,
            "max_ciphertext_length": max_ciphertext_chars,
        },
    )
