"""Waits between retries that grow after each failure, up to a ceiling.

A fault that lasts (a full disk, a lost node) must not be hammered by every message and
every worker at once, and a fault that clears must be noticed soon. Each retry waits
twice as long as the one before, from ``first`` up to ``ceiling`` seconds, with up to
a fifth of random spread so that workers started together do not retry in step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    first: float = 0.5
    ceiling: float = 10.0
    _failures: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.ceiling:
            raise ValueError("backoff needs 0 < first <= ceiling")

    @property
    def failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def next_delay(self) -> float:
        """Count a failure; the seconds to wait before the next try."""
        delay = min(self.ceiling, self.first * 2.0 ** min(self._failures, 30))
        self._failures += 1
        return delay * random.uniform(0.8, 1.0)

    def reset(self) -> None:
        """A try succeeded: the next failure starts again at ``first``."""
        self._failures = 0
