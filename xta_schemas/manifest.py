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
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import StandardLoadError

__all__ = [
    "BEHOERDENKENNUNG",
    "FILL_IN",
    "MANIFEST_NAME",
    "XOEV_UUID",
    "HeaderPaths",
    "Manifest",
    "PartyPaths",
    "StandardInfo",
    "read_manifest",
]

MANIFEST_NAME = "manifest.toml"
# What `xbroker schemas init` writes where only the operator can say what belongs; a
# manifest that still holds it does not load.
FILL_IN = "<fill in"

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


# The XÖV basisnachricht's type UUID (xoev-basisnachricht-g2g 1.1): hex digits in the
# 8-4-4-4-12 form, either case, any version and variant.
XOEV_UUID = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from exc
    return value


class PartyPaths(_Section):
    """``[header.party]``: XPaths relative to an author or reader element."""

    kennung: str = "kennung"
    name: str = "name"
    verzeichnisdienst: str = "verzeichnisdienst/code"
    # What a kennung must look like. Releases that name parties otherwise (XJustiz names a
    # court by its code, ``K1101``) set their own.
    kennung_pattern: str = BEHOERDENKENNUNG
    # Where a release names parties by a code of its own code list (XJustiz: ``K1101``),
    # the Behördenkennung the directory routes by is ``<prefix>:<code>`` (``jus:K1101``).
    # Without a prefix the kennung is used as the message states it.
    kennung_prefix: str | None = None
    # Where a party without a kennung may be named in free text (XJustiz
    # ``absender.sonstige``, xdomea ``Institution/Name``): the directory's ``aliases``
    # map the text to a participant; a text no participant has is refused.
    free_text: str | None = None

    @field_validator("kennung_prefix")
    @classmethod
    def _prefix_is_a_directory_prefix(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[a-z]{2,10}", value):
            raise ValueError(f"{value!r} is not a kennung prefix: 2 to 10 letters a-z")
        return value

    @field_validator("kennung_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        return _compiles(value)


_KOPF = "nachrichtenkopf.g2g"
_ID = f"{_KOPF}/identifikation.nachricht"


class HeaderPaths(_Section):
    """``[header]``: where the header's fields are and which rules they follow.

    The XPaths are relative to the root element and default to the XÖV g2g header. Each
    rule's default is what the XÖV basisnachricht's own XSD allows; `xbroker schemas
    init` writes the rules a release's XSDs allow into its draft.
    """

    uuid: str = f"{_ID}/nachrichtenUUID"
    # What identifies one message: "element" (the ``uuid`` XPath), several XPaths whose
    # values together do, or "transport" where the standard has none (xdomea's ProzessID
    # is shared by a whole process): the broker then assigns one from the transport's id
    # (AMQP message_id, HTTP Idempotency-Key) or, without one, from the message's digest.
    identity: Literal["element", "transport"] | Annotated[tuple[str, ...], Field(min_length=1)] = (
        "element"
    )
    # "pattern": the identity must match ``uuid_pattern`` (the standard's own type);
    # "rfc4122": a canonical lower-case RFC 4122 UUID (version 1 to 8, variant 10xx).
    uuid_form: Literal["pattern", "rfc4122"] = "pattern"
    uuid_pattern: str = XOEV_UUID
    nachrichtentyp: str = f"{_ID}/nachrichtentyp/code"
    # False where the header carries no nachrichtentyp (XJustiz): the root element alone
    # names the message type, and ``nachrichtentyp`` is not read.
    nachrichtentyp_in_header: bool = True
    # How the header's nachrichtentyp relates to the root element: "map", the code
    # [message_types] gives the root (XWasser's code list: "2010"); "check", the root's
    # own name; "skip", not compared, as where the XSD lets any code stand with any root.
    # The message type is always the root's, as [message_types] names it.
    nachrichtentyp_rule: Literal["map", "check", "skip"] = "map"
    list_uri: str = f"{_ID}/nachrichtentyp/@listURI"
    list_version: str = f"{_ID}/nachrichtentyp/@listVersionID"
    created: str = f"{_ID}/erstellungszeitpunkt"
    # xs:dateTime lets the time zone out: "optional" reads such a time in
    # ``default_zone`` (and the receipt says so); "required" refuses it.
    time_zone: Literal["optional", "required"] = "optional"
    default_zone: str = "Europe/Berlin"
    author: str = f"{_KOPF}/autor"
    # A message that names no author (an empty kennung, as the XÖV types allow):
    # "signer", its signer is the author; "refuse", it is header-invalid.
    missing_author: Literal["signer", "refuse"] = "signer"
    readers: str = f"{_KOPF}/leser"
    test: str | None = "@test"
    # "boolean": the test flag is true/false/1/0. "present": whatever it holds, its presence
    # marks a test message, as in the XÖV basisnachricht (XWasser's ``@test``).
    test_means: Literal["boolean", "present"] = "boolean"
    party: PartyPaths = PartyPaths()

    @field_validator("uuid_pattern")
    @classmethod
    def _uuid_pattern_compiles(cls, value: str) -> str:
        return _compiles(value)

    @field_validator("default_zone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"{value!r} is not a time zone name like 'Europe/Berlin'") from exc
        return value


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
    _refuse_unfilled(path)
    try:
        return Manifest.model_validate({**data, "folder": folder})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise StandardLoadError(f"{path}: invalid manifest: {problems}") from exc


def _refuse_unfilled(path: Path) -> None:
    """A drafted manifest loads only once the operator filled in what it marks."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if FILL_IN in stripped and not stripped.startswith("#"):
            raise StandardLoadError(
                f"{path}:{number}: still to be filled in: {stripped}  "
                "(write the XPath the comment above it asks for)"
            )
