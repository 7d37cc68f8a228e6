"""Where a party's key and certificate live under a PKI folder.

The layout is shared by deployed installations and the development PKI
(`signing.devpki`): ``<pki_dir>/parties/<file-id>.crt|.key``, where the file id is the
Behördenkennung with ``:`` replaced by ``_`` (``psw:02000000`` → ``psw_02000000``).
"""

from __future__ import annotations

from pathlib import Path

from signing.certs import KENNUNG_PATTERN
from signing.errors import PkiError

__all__ = ["file_id", "party_paths"]


def file_id(kennung: str) -> str:
    """The file name stem for a Behördenkennung: ``psw:02000000`` → ``psw_02000000``."""
    if not KENNUNG_PATTERN.match(kennung):
        raise PkiError(f"not a Behördenkennung: {kennung!r} (expected prefix:kennung)")
    return kennung.replace(":", "_")


def party_paths(pki_dir: Path, kennung: str) -> tuple[Path, Path]:
    """Certificate and key path of a party in the development PKI."""
    stem = pki_dir / "parties" / file_id(kennung)
    return stem.with_suffix(".crt"), stem.with_suffix(".key")
