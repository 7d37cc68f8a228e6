"""Deprecated: use `broker.sdk.agency`. Kept importable for one release."""

import warnings

from broker.sdk.agency import *  # noqa: F403
from broker.sdk.agency import __all__ as __all__

warnings.warn(
    "broker.agency moved to broker.sdk.agency; this alias goes away in the next release",
    DeprecationWarning,
    stacklevel=2,
)
