"""Sealed delivery: JWE for one recipient, so that what waits in a queue is unreadable.

The broker seals each copy for the encryption key of the agency that receives it, after
it has verified, validated and routed the message; a portal may seal a submission for
the broker's key. Only the holder of the private key opens it, in memory. Knows nothing
of AMQP or routing; see ``sealing.errors`` for the error tree and ``sealing.profile``
for the algorithms.
"""

from sealing.errors import SealingError, SealingKeyError, UnsealError
from sealing.jwe import Opened, kid_of, seal, unseal
from sealing.keys import KeyRing, RecipientKey, key_id
from sealing.profile import CONTENT_ENCRYPTION, SEALED_CONTENT_TYPE, KeyAlgorithm, SealLimits

__all__ = [
    "CONTENT_ENCRYPTION",
    "SEALED_CONTENT_TYPE",
    "KeyAlgorithm",
    "KeyRing",
    "Opened",
    "RecipientKey",
    "SealLimits",
    "SealingError",
    "SealingKeyError",
    "UnsealError",
    "key_id",
    "kid_of",
    "seal",
    "unseal",
]
