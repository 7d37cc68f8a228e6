"""The manifest of a standard (``manifest.toml``) and its checked, typed form.

The manifest says everything the broker must know about a standard without reading its
XSDs: name, version, namespace, entry schemas, which root element is which
nachrichtentyp, where the header fields sit, which routing facts the content carries,
and how absolute schema locations map to local files. See docs/standards.md.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import StandardLoadError

__all__ = [
    "BEHOERDENKENNUNG",
    "MANIFEST_NAME",
    "HeaderPaths",
    "Manifest",
    "PartyPaths",
    "StandardInfo",
    "read_manifest",
]

MANIFEST_NAME = "manifest.toml"

_Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*$")]
_NonEmpty = Annotated[str, Field(min_length=1)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StandardInfo(_Section):
    """``[standard]``: identity of the standard and where its schemas are."""

    name: _Name
    version: _NonEmpty
    namespace: _NonEmpty
    title: str = ""
    schemas: Annotated[tuple[_NonEmpty, ...], Field(min_length=1)]
    samples: tuple[_NonEmpty, ...] = ()
    catalog: str | None = None
    # Namespaces starting with this belong to the standard; a message in one that is not in
    # service is answered with unsupported-version rather than unknown-message-type.
    namespace_family: str | None = None
    # version -> namespace of versions that were in service once.
    retired: dict[str, str] = {}
    # For standards that keep one namespace across versions (XJustiz: http://www.xjustiz.de,
    # the version in nachrichtenkopf/@xjustizVersion): an XPath relative to the root that
    # gives the version a message speaks, and the value it has for this version (default:
    # ``version``). Several versions of such a standard can then be in service together.
    version_in_message: str | None = None
    message_version: str | None = None


# A Behördenkennung as the DVDV writes it: prefix, colon, kennung (``psw:02000000``).
BEHOERDENKENNUNG = r"^[a-z]{2,6}:[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$"


class PartyPaths(_Section):
    """``[header.party]``: XPaths relative to an author or reader element."""

    kennung: str = "kennung"
    name: str = "name"
    verzeichnisdienst: str = "verzeichnisdienst/code"
    # What a kennung must look like. Releases that name parties otherwise (XJustiz names a
    # court by its code, ``K1101``) set their own; the broker still refuses an empty one.
    kennung_pattern: str = BEHOERDENKENNUNG
    # Where a release names parties by a code of its own code list (XJustiz: ``K1101``),
    # the Behördenkennung the directory routes by is ``<prefix>:<code>`` (``jus:K1101``).
    # Without a prefix the kennung is used as the message states it.
    kennung_prefix: str | None = None

    @field_validator("kennung_prefix")
    @classmethod
    def _prefix_is_a_directory_prefix(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]{2,10}", value):
            raise ValueError(f"{value!r} is not a kennung prefix: 2 to 10 letters a-z")
        return value

    @field_validator("kennung_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from exc
        return value


_KOPF = "nachrichtenkopf.g2g"
_ID = f"{_KOPF}/identifikation.nachricht"


class HeaderPaths(_Section):
    """``[header]``: XPaths relative to the root element. Defaults fit the XÖV g2g header."""

    uuid: str = f"{_ID}/nachrichtenUUID"
    nachrichtentyp: str = f"{_ID}/nachrichtentyp/code"
    # False where the header carries no nachrichtentyp (XJustiz): the root element alone
    # names the message type, and ``nachrichtentyp`` is not read.
    nachrichtentyp_in_header: bool = True
    list_uri: str = f"{_ID}/nachrichtentyp/@listURI"
    list_version: str = f"{_ID}/nachrichtentyp/@listVersionID"
    created: str = f"{_ID}/erstellungszeitpunkt"
    author: str = f"{_KOPF}/autor"
    readers: str = f"{_KOPF}/leser"
    test: str | None = "@test"
    # "boolean": the test flag is true/false/1/0. "present": whatever it holds, its presence
    # marks a test message, as in the XÖV basisnachricht (XWasser's ``@test``).
    test_means: Literal["boolean", "present"] = "boolean"
    party: PartyPaths = PartyPaths()


class Manifest(_Section):
    """A whole manifest, checked. ``folder`` is where it was read from."""

    folder: Path
    standard: StandardInfo
    namespaces: dict[str, str] = {}
    # root element local name -> nachrichtentyp code
    message_types: Annotated[dict[str, _NonEmpty], Field(min_length=1)]
    header: HeaderPaths = HeaderPaths()
    # fact name -> XPath (or XPaths tried in order) relative to the root
    routing: dict[str, str | tuple[str, ...]] = {}
    # absolute schema URL -> file path relative to the folder
    url_map: dict[str, str] = {}

    @field_validator("routing")
    @classmethod
    def _routing_paths_given(
        cls, value: dict[str, str | tuple[str, ...]]
    ) -> dict[str, str | tuple[str, ...]]:
        for fact, paths in value.items():
            if not paths:
                raise ValueError(f"routing fact {fact!r} names no XPath")
        return value

    def routing_paths(self) -> dict[str, tuple[str, ...]]:
        """Every routing fact with its XPaths as a tuple, in the order they are tried."""
        return {
            fact: (paths,) if isinstance(paths, str) else paths
            for fact, paths in self.routing.items()
        }


def read_manifest(folder: Path) -> Manifest:
    """Read and check ``folder/manifest.toml``; any problem is a StandardLoadError."""
    path = folder / MANIFEST_NAME
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise StandardLoadError(f"{folder}: no {MANIFEST_NAME} in this folder") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StandardLoadError(f"{path}: cannot read manifest: {exc}") from exc
    try:
        return Manifest.model_validate({**data, "folder": folder})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise StandardLoadError(f"{path}: invalid manifest: {problems}") from exc
