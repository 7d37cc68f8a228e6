"""Errors of the sealing package, in the one tree of `broker.errors` (drawn there).

Error tree::

    SealingError                  root of everything this package raises on purpose
    ├── UnsealError               a sealed message does not open; ``reason`` says why:
    │                             seal-key-unknown or seal-invalid (also a Rejection)
    └── SealingKeyError           a party has no usable encryption key, or a key file
                                  cannot be used (also a ConfigurationError)
"""

from __future__ import annotations

from broker.errors import ConfigurationError, Rejection, XBrokerError

__all__ = ["SealingError", "SealingKeyError", "UnsealError"]


class SealingError(XBrokerError):
    """Root of every error the sealing package raises on purpose."""


class UnsealError(SealingError, Rejection, ValueError):
    """A JWE that does not open: ``Reason.SEAL_KEY_UNKNOWN`` when it names a key the
    receiver does not hold, ``Reason.SEAL_INVALID`` for anything else (corrupted,
    malformed, too large, another algorithm than the profile's)."""


class SealingKeyError(SealingError, ConfigurationError):
    """A party has no encryption key that can be used, or a key file is unusable."""
