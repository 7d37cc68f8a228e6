"""Where a party's key and certificate live under a PKI folder.

The layout is shared by deployed installations and the development PKI
(`signing.devpki`): ``<pki_dir>/parties/<file-id>.crt|.key``, where the file id is the
Behördenkennung with ``:`` replaced by ``_`` (``psw:02000000`` → ``psw_02000000``).

A party's encryption keys (what copies are sealed for, `sealing`) sit beside them as
``<file-id>.enc.crt|.key``, and after a key rotation ``<file-id>.enc.2.crt|.key``,
``.enc.3`` and so on: every one of them is held until it is removed, so copies sealed
for an older key still open.
"""

from __future__ import annotations

from pathlib import Path

from signing.certs import KENNUNG_PATTERN
from signing.errors import PkiError

__all__ = ["encryption_paths", "file_id", "next_encryption_paths", "party_paths"]


def file_id(kennung: str) -> str:
    """The file name stem for a Behördenkennung: ``psw:02000000`` → ``psw_02000000``."""
    if not KENNUNG_PATTERN.match(kennung):
        raise PkiError(f"not a Behördenkennung: {kennung!r} (expected prefix:kennung)")
    return kennung.replace(":", "_")


def party_paths(pki_dir: Path, kennung: str) -> tuple[Path, Path]:
    """Certificate and key path of a party in the development PKI."""
    stem = pki_dir / "parties" / file_id(kennung)
    return stem.with_suffix(".crt"), stem.with_suffix(".key")


def _encryption_stem(kennung: str, number: int) -> str:
    return f"{file_id(kennung)}.enc" if number == 1 else f"{file_id(kennung)}.enc.{number}"


def encryption_paths(pki_dir: Path, kennung: str) -> list[tuple[Path, Path]]:
    """Certificate and key paths of every encryption key a party holds, oldest first."""
    parties = pki_dir / "parties"
    found: list[tuple[int, Path, Path]] = []
    for cert in parties.glob(f"{file_id(kennung)}.enc*.crt"):
        suffix = cert.name.removeprefix(f"{file_id(kennung)}.enc").removesuffix(".crt")
        number = 1 if suffix == "" else int(suffix[1:]) if suffix[1:].isdigit() else 0
        if number and cert.with_suffix(".key").is_file():
            found.append((number, cert, cert.with_suffix(".key")))
    return [(cert, key) for _, cert, key in sorted(found)]


def next_encryption_paths(pki_dir: Path, kennung: str) -> tuple[Path, Path]:
    """Where a party's next encryption key goes: ``.enc`` first, then ``.enc.2``, …"""
    number = 1
    while (pki_dir / "parties" / f"{_encryption_stem(kennung, number)}.crt").exists():
        number += 1
    stem = pki_dir / "parties" / _encryption_stem(kennung, number)
    return stem.with_name(stem.name + ".crt"), stem.with_name(stem.name + ".key")
