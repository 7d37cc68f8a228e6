"""Deprecated: use `broker.sdk.portal`. Kept importable for one release."""

import warnings

from broker.sdk.portal import *  # noqa: F403
from broker.sdk.portal import __all__ as __all__

warnings.warn(
    "broker.portal moved to broker.sdk.portal; this alias goes away in the next release",
    DeprecationWarning,
    stacklevel=2,
)
