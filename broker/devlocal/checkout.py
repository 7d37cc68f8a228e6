"""The files of a checkout's local servers: where the checkout is, and the lock that
serialises their start and stop."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

__all__ = ["locked", "project_root"]


def project_root() -> Path:
    """The checkout this package was installed from (editable), else the working directory."""
    candidate = Path(__file__).resolve().parents[2]
    return candidate if (candidate / "pyproject.toml").is_file() else Path.cwd()


@contextlib.contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """Serialise ensure/stop across processes (make, pytest, a second terminal)."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
