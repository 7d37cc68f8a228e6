"""Seal a message for one recipient, and open what was sealed for a key ring.

A sealed message is a JWE in the compact serialisation (ASCII bytes), made by joserfc
under the profile of `sealing.profile`. Its protected header names the key it was
sealed for (``kid``) and the media type of what it carries (``cty``: the signed XÖV
message, or a bundle with attachments). Opening happens in memory only: the plaintext
is returned, never written anywhere, and the caller parses it with the hardened parser
like any other input.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from joserfc import jwe
from joserfc.errors import ExceededSizeError, JoseError

from broker.errors import Reason
from sealing.errors import UnsealError
from sealing.keys import KeyRing, RecipientKey
from sealing.profile import CONTENT_ENCRYPTION, SealLimits

__all__ = ["Opened", "kid_of", "seal", "unseal"]

_DEFAULT_CONTENT_TYPE = "application/xml"
_MAX_CONTENT_TYPE = 100


@dataclass(frozen=True, slots=True)
class Opened:
    """What a sealed message carried, and which key opened it."""

    plaintext: bytes
    content_type: str
    kid: str


def seal(
    plaintext: bytes,
    recipient: RecipientKey,
    *,
    content_type: str = _DEFAULT_CONTENT_TYPE,
    limits: SealLimits | None = None,
) -> bytes:
    """``plaintext`` sealed for ``recipient``: a compact JWE with a fresh content key."""
    limits = limits or SealLimits(max(len(plaintext), 1))
    protected = {
        "alg": recipient.algorithm.value,
        "enc": CONTENT_ENCRYPTION,
        "kid": recipient.kid,
        "cty": content_type,
    }
    token = jwe.encrypt_compact(protected, plaintext, recipient.jwk, registry=limits.registry())
    return token.encode("ascii")


def _invalid(detail: str) -> UnsealError:
    return UnsealError(Reason.SEAL_INVALID, detail)


def _header(sealed: bytes) -> dict[str, object]:
    segment, dot, _ = sealed.partition(b".")
    if not dot or sealed.count(b".") != 4:
        raise _invalid("not a JWE in the compact serialisation (five parts)")
    if len(segment) > 2048:
        raise _invalid("its protected header is longer than 2048 characters")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError) as exc:
        raise _invalid(f"its protected header is not base64url JSON: {exc}") from None
    if not isinstance(header, dict):
        raise _invalid("its protected header is not a JSON object")
    return header


def kid_of(sealed: bytes) -> str:
    """The ``kid`` a sealed message names (without opening it); UnsealError if none."""
    kid = _header(sealed).get("kid")
    if not isinstance(kid, str) or not kid:
        raise _invalid("its protected header names no key (kid)")
    return kid


def unseal(sealed: bytes, ring: KeyRing, limits: SealLimits) -> Opened:
    """Open ``sealed`` with the key of ``ring`` it names.

    Raises UnsealError: ``seal-key-unknown`` when the ring holds no key of that ``kid``
    (a wrong or rotated-away key), ``seal-invalid`` for anything else: too large, not
    compact JWE, another algorithm than the profile's, compressed, or altered (the
    authentication tag does not match).
    """
    if len(sealed) > limits.max_sealed_bytes:
        raise _invalid(f"larger than {limits.max_sealed_bytes} bytes")
    kid = kid_of(sealed)
    key = ring.get(kid)
    if key is None:
        held = ", ".join(sorted(ring)) or "none"
        raise UnsealError(
            Reason.SEAL_KEY_UNKNOWN, f"sealed for key {kid}, which is not held (held: {held})"
        )
    try:
        opened = jwe.decrypt_compact(sealed, key, registry=limits.registry())
    except ExceededSizeError as exc:
        # Refused before anything is decrypted: a part is longer than the limits allow.
        raise _invalid(
            f"larger than the limit of {limits.max_plaintext_bytes} bytes: {exc.description}"
        ) from None
    except JoseError as exc:
        # joserfc says "decode_error" with no text when the tag does not match.
        why = exc.description or "the authentication tag does not match (altered or corrupted)"
        raise _invalid(f"does not open with key {kid}: {exc.error}: {why}") from None
    except ValueError as exc:
        raise _invalid(f"does not open with key {kid}: {exc}") from None
    plaintext = opened.plaintext
    if plaintext is None or len(plaintext) > limits.max_plaintext_bytes:
        raise _invalid(f"its content is larger than {limits.max_plaintext_bytes} bytes")
    content_type = opened.protected.get("cty", _DEFAULT_CONTENT_TYPE)
    if not isinstance(content_type, str) or len(content_type) > _MAX_CONTENT_TYPE:
        raise _invalid("its content type (cty) is not a media type")
    return Opened(plaintext, content_type, kid)
