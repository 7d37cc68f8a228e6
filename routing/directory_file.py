"""The directory file: a TOML file of agencies, validated with pydantic; an invalid file
is refused with a message naming the entry and the field.

Sealed delivery (`sealing`): an agency marked ``sealed`` gets each copy as a JWE for its
encryption key. ``sealed = true`` at the top of the file makes it the default for every
agency that receives over AMQP or webhook (a new directory says so; one written before
sealing existed delivers in clear until it does); an entry's own ``sealed`` wins. A
sealed agency without an encryption certificate is refused here, at load. An XTA
agency cannot be sealed: XTA 2 hands its software the XÖV message itself (docs/xta.md).
Whether a certificate is trusted, unexpired and unrevoked is checked where the trust
store is (`broker.worker.sealer`), also at load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import tomli
from pydantic import Field, ValidationError, field_validator

from routing.agency import (
    ANY_REGION,
    Agency,
    AmqpEndpoint,
    Endpoint,
    FrozenModel,
    RegisteredCertificate,
    Subscription,
    XtaEndpoint,
)
from routing.certificates import CertificateFiles, encryption_certificate, signing_certificate
from routing.errors import DirectoryError

__all__ = ["read_agencies", "read_parties"]

KENNUNG_PATTERN = re.compile(r"^[a-z]{2,10}:[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


def _subscriptions(value: object) -> object:
    # "meldung.anmeldung.0200" or "meldung.anmeldung.0200@1.1" are shorthands.
    if not isinstance(value, list):
        return value
    out: list[object] = []
    for item in value:
        if isinstance(item, str):
            type_, _, versions = item.partition("@")
            out.append({"type": type_, "versions": [v for v in versions.split(",") if v]})
        else:
            out.append(item)
    return out


class AgencyEntry(FrozenModel):
    kennung: str
    name: str
    # Free-text names messages give this participant where they name it by no kennung
    # (xdomea ``Institution/Name``, XJustiz ``absender.sonstige``); the name counts too.
    aliases: tuple[str, ...] = ()
    certificates: tuple[str, ...] = ()
    encryption: tuple[str, ...] = Field(
        default=(), description="encryption certificate files, newest valid one sealed for"
    )
    sealed: bool | None = Field(default=None, description="default: the directory's sealed")
    accepts: tuple[Subscription, ...] = ()
    # AGS prefixes; "*": responsible everywhere, also for messages that name no region.
    regions: tuple[str, ...] = ()
    notify: tuple[Subscription, ...] = ()
    may_send: tuple[str, ...] = ()
    endpoint: Annotated[Endpoint, Field(discriminator="kind")] = AmqpEndpoint()

    _split_accepts = field_validator("accepts", "notify", mode="before")(_subscriptions)

    @field_validator("kennung")
    @classmethod
    def _kennung(cls, value: str) -> str:
        if not KENNUNG_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a Behördenkennung like 'psw:02000000'")
        return value

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for region in value:
            if region == ANY_REGION:
                continue
            if not region.isdigit() or not 2 <= len(region) <= 12:
                raise ValueError(f"region {region!r} is not an AGS or regional key (digits)")
        return value


class DirectoryFile(FrozenModel):
    sealed: bool = Field(default=False, description="seal copies for every agency by default")
    agency: tuple[AgencyEntry, ...] = ()


def read_agencies(path: Path, base: Path, files: CertificateFiles) -> list[Agency]:
    """The agencies of a directory file, checked; certificate paths resolve against
    ``base``, certificate files are read through ``files``."""
    try:
        raw = tomli.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomli.TOMLDecodeError) as exc:
        raise DirectoryError(f"{path}: cannot read directory: {exc}") from exc
    try:
        parsed = DirectoryFile.model_validate(raw)
    except ValidationError as exc:
        raise DirectoryError(_explain(path, raw, exc)) from exc
    agencies: list[Agency] = []
    seen: set[str] = set()
    for index, entry in enumerate(parsed.agency):
        if entry.kennung in seen:
            raise DirectoryError(f"{path}: agency[{index}] ({entry.kennung}): listed twice")
        seen.add(entry.kennung)
        certs = tuple(
            signing_certificate(path, index, entry.kennung, ref, base, files)
            for ref in entry.certificates
        )
        where = f"{path}: agency[{index}] ({entry.kennung})"
        encryption = tuple(
            encryption_certificate(where, ref, base, files) for ref in entry.encryption
        )
        sealed = _sealed(where, entry, parsed.sealed, encryption)
        agencies.append(
            Agency(
                kennung=entry.kennung,
                name=entry.name,
                certificates=certs,
                accepts=entry.accepts,
                regions=entry.regions,
                notify=entry.notify,
                may_send=entry.may_send,
                endpoint=entry.endpoint,
                aliases=entry.aliases,
                encryption=encryption,
                sealed=sealed,
            )
        )
    return agencies


def _sealed(
    where: str,
    entry: AgencyEntry,
    default: bool,
    encryption: tuple[RegisteredCertificate, ...],
) -> bool:
    receives = bool(entry.accepts or entry.notify)
    if isinstance(entry.endpoint, XtaEndpoint):
        if entry.sealed:
            raise DirectoryError(
                f"{where}.sealed: an XTA agency cannot be sealed: XTA 2 hands its software "
                "the XÖV message itself, not a JWE (docs/xta.md, Sealed delivery)"
            )
        return False
    sealed = default if entry.sealed is None else entry.sealed
    if sealed and receives and not encryption:
        raise DirectoryError(
            f"{where}: copies for it are sealed, but it registers no encryption "
            "certificate (encryption = [...]); issue one with `xbroker pki issue "
            f"{entry.kennung} NAME --encryption`, or set sealed = false for it"
        )
    return sealed and receives


def _explain(path: Path, raw: Mapping[str, object], exc: ValidationError) -> str:
    lines = [f"{path}: invalid directory"]
    entries = raw.get("agency")
    for error in exc.errors():
        loc = list(error["loc"])
        where = ".".join(str(p) for p in loc)
        if (
            len(loc) >= 2
            and loc[0] == "agency"
            and isinstance(loc[1], int)
            and isinstance(entries, list)
        ):
            entry = entries[loc[1]] if loc[1] < len(entries) else {}
            kennung = entry.get("kennung", "?") if isinstance(entry, dict) else "?"
            field = ".".join(str(p) for p in loc[2:]) or "(entry)"
            where = f"agency[{loc[1]}] ({kennung}).{field}"
        lines.append(f"  {where}: {error['msg']}")
    return "\n".join(lines)


def read_parties(path: Path) -> list[tuple[str, str]]:
    """(kennung, name) of every entry, without loading certificates: what a PKI needs
    before the certificates exist."""
    try:
        raw = tomli.loads(path.read_text(encoding="utf-8"))
        parsed = DirectoryFile.model_validate(raw)
    except (OSError, tomli.TOMLDecodeError) as exc:
        raise DirectoryError(f"{path}: cannot read directory: {exc}") from exc
    except ValidationError as exc:
        raise DirectoryError(_explain(path, raw, exc)) from exc
    return [(entry.kennung, entry.name) for entry in parsed.agency]
