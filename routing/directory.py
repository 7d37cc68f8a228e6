"""The agency directory: who exists, how to reach them, what they send and receive.

Modelled on DVDV: each participant has a Behördenkennung (``prefix:kennung``), a name,
the certificates it signs with, the certificates of its encryption keys, the message
types it receives (as named reader or as the agency responsible for a region), the types
it receives copies of, and the types it may author. The directory is loaded from a TOML
file and validated with pydantic; an invalid file is refused with a message naming the
entry and the field.

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

import fnmatch
import hashlib
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from routing.errors import DirectoryError

__all__ = [
    "Agency",
    "AmqpEndpoint",
    "CertificateFiles",
    "Directory",
    "RegisteredCertificate",
    "Subscription",
    "WebhookEndpoint",
    "XtaEndpoint",
    "read_parties",
]

# A region entry that covers every region, and messages that name none.
ANY_REGION = "*"

KENNUNG_PATTERN = re.compile(r"^[a-z]{2,10}:[A-Za-z0-9][A-Za-z0-9._\-]{0,63}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subscription(_Model):
    """A message type an agency accepts, optionally limited to some standard versions."""

    type: str
    versions: tuple[str, ...] = ()

    def matches(self, nachrichtentyp: str, version: str) -> bool:
        if not fnmatch.fnmatchcase(nachrichtentyp, self.type):
            return False
        return not self.versions or version in self.versions


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


class AmqpEndpoint(_Model):
    kind: Literal["amqp"] = "amqp"
    test: bool = Field(default=True, description="has a test inbox for messages with the test flag")


class WebhookEndpoint(_Model):
    kind: Literal["webhook"]
    url: str
    secret_env: str = Field(description="environment variable holding the webhook secret")
    test_url: str | None = None

    @field_validator("url", "test_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("https://", "http://127.", "http://localhost")
        ):
            raise ValueError("webhook URLs must be https:// (plain http only on loopback)")
        return value

    @property
    def test(self) -> bool:
        return self.test_url is not None


class XtaEndpoint(_Model):
    """The agency's software fetches its messages over XTA 2 (``broker.xta``): its copies
    wait in a RabbitMQ stream, its message box, until it closes them."""

    kind: Literal["xta"]
    test: bool = Field(default=False, description="XTA boxes have no separate test box")


class AgencyEntry(_Model):
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
    endpoint: Annotated[
        AmqpEndpoint | WebhookEndpoint | XtaEndpoint, Field(discriminator="kind")
    ] = AmqpEndpoint()

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


class DirectoryFile(_Model):
    sealed: bool = Field(default=False, description="seal copies for every agency by default")
    agency: tuple[AgencyEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class RegisteredCertificate:
    """A signing certificate registered for an agency (by file or by fingerprint)."""

    fingerprint: str
    certificate: x509.Certificate | None
    source: str

    @property
    def not_after(self) -> datetime | None:
        return self.certificate.not_valid_after_utc if self.certificate else None


@dataclass(frozen=True, slots=True)
class Agency:
    kennung: str
    name: str
    certificates: tuple[RegisteredCertificate, ...]
    accepts: tuple[Subscription, ...]
    regions: tuple[str, ...]
    notify: tuple[Subscription, ...]
    may_send: tuple[str, ...]
    endpoint: AmqpEndpoint | WebhookEndpoint | XtaEndpoint
    aliases: tuple[str, ...] = ()
    encryption: tuple[RegisteredCertificate, ...] = ()
    sealed: bool = False  # copies for it are sealed for one of its encryption keys

    def accepts_type(self, nachrichtentyp: str, version: str) -> bool:
        return any(s.matches(nachrichtentyp, version) for s in self.accepts)

    def notified_of(self, nachrichtentyp: str, version: str) -> bool:
        return any(s.matches(nachrichtentyp, version) for s in self.notify)

    def may_author(self, nachrichtentyp: str) -> bool:
        return any(fnmatch.fnmatchcase(nachrichtentyp, p) for p in self.may_send)

    def responsible_for(self, region: str | None) -> bool:
        """Whether the agency is responsible for ``region`` (None: a message naming none)."""
        if ANY_REGION in self.regions:
            return True
        # A region entry covers every key it prefixes: "01060" covers "01060063".
        return region is not None and any(region.startswith(r) for r in self.regions)

    @property
    def fingerprints(self) -> frozenset[str]:
        return frozenset(c.fingerprint for c in self.certificates)


class Directory:
    """The loaded directory. Immutable: a reload builds a new one.

    Routing asks two questions of every message: who accepts this type for this region,
    and who is notified of it. A country's directory has tens of thousands of agencies,
    so both are answered from indexes built once here, not by a scan of every entry:
    agencies by region entry and by exact message type, with the few whose types are
    patterns (``meldung.*``) kept apart and checked one by one. Answers keep the order
    of the directory file, as a scan would give them.
    """

    def __init__(self, agencies: Sequence[Agency], source: Path | None = None) -> None:
        self._agencies: Mapping[str, Agency] = {a.kennung: a for a in agencies}
        self.source = source
        self._aliases: dict[str, str] = {}
        for agency in agencies:
            for text in (agency.name, *agency.aliases):
                self._aliases.setdefault(_alias_key(text), agency.kennung)
        self._position = {kennung: index for index, kennung in enumerate(self._agencies)}
        self._by_region = _Index()
        self._everywhere: list[Agency] = []
        self._notified = _Index()
        for agency in self._agencies.values():
            for region in agency.regions:
                if region == ANY_REGION:
                    self._everywhere.append(agency)
                else:
                    self._by_region.add(region, agency)
            for subscription in agency.notify:
                self._notified.add_type(subscription.type, agency)
        self._longest_region = max((len(r) for r in self._by_region.exact), default=0)

    def responsible(self, region: str | None, nachrichtentyp: str, version: str) -> list[Agency]:
        """Agencies that accept the type and version and are responsible for ``region``
        (None: a message naming none), in the directory's order."""
        found = list(self._everywhere)
        if region is not None:
            for length in range(1, min(len(region), self._longest_region) + 1):
                found += self._by_region.exact.get(region[:length], ())
        return self._ordered(a for a in found if a.accepts_type(nachrichtentyp, version))

    def notified(self, nachrichtentyp: str, version: str) -> list[Agency]:
        """Agencies notified of the type and version, in the directory's order."""
        found = [*self._notified.exact.get(nachrichtentyp, ()), *self._notified.patterns]
        return self._ordered(a for a in found if a.notified_of(nachrichtentyp, version))

    def _ordered(self, agencies: Iterable[Agency]) -> list[Agency]:
        unique = {a.kennung: a for a in agencies}
        return sorted(unique.values(), key=lambda a: self._position[a.kennung])

    def __iter__(self) -> Iterator[Agency]:
        return iter(self._agencies.values())

    def __len__(self) -> int:
        return len(self._agencies)

    def __contains__(self, kennung: object) -> bool:
        return kennung in self._agencies

    def get(self, kennung: str) -> Agency | None:
        return self._agencies.get(kennung)

    def kennung_named(self, text: str) -> str | None:
        """The kennung of the participant a free-text name (its name or an alias) names."""
        return self._aliases.get(_alias_key(text))

    def certificate_registered(self, kennung: str, fingerprint: str) -> bool:
        agency = self._agencies.get(kennung)
        return agency is not None and fingerprint.lower() in agency.fingerprints

    @classmethod
    def load(
        cls,
        path: Path,
        certificate_dir: Path | None = None,
        *,
        certificates: CertificateFiles | None = None,
    ) -> Directory:
        """Load and check a directory file; certificate paths resolve against certificate_dir
        (default: the file's folder). ``certificates``: the files read by earlier loads,
        kept by whoever reloads (default: a fresh one for this load)."""
        files = certificates if certificates is not None else CertificateFiles()
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise DirectoryError(f"{path}: cannot read directory: {exc}") from exc
        try:
            parsed = DirectoryFile.model_validate(raw)
        except ValidationError as exc:
            raise DirectoryError(_explain(path, raw, exc)) from exc
        base = certificate_dir or path.parent
        agencies: list[Agency] = []
        seen: set[str] = set()
        for index, entry in enumerate(parsed.agency):
            if entry.kennung in seen:
                raise DirectoryError(f"{path}: agency[{index}] ({entry.kennung}): listed twice")
            seen.add(entry.kennung)
            certs = tuple(
                _certificate(path, index, entry.kennung, ref, base, files)
                for ref in entry.certificates
            )
            where = f"{path}: agency[{index}] ({entry.kennung})"
            encryption = tuple(
                _encryption_certificate(where, ref, base, files) for ref in entry.encryption
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
        return cls(agencies, source=path)


class _Index:
    """Agencies by a key: exact keys in a dict, patterns (fnmatch) in a list."""

    def __init__(self) -> None:
        self.exact: dict[str, list[Agency]] = {}
        self.patterns: list[Agency] = []

    def add(self, key: str, agency: Agency) -> None:
        self.exact.setdefault(key, []).append(agency)

    def add_type(self, pattern: str, agency: Agency) -> None:
        if any(c in pattern for c in "*?["):
            if agency not in self.patterns:
                self.patterns.append(agency)
        else:
            self.add(pattern, agency)


def _alias_key(text: str) -> str:
    """Free text as compared: case and runs of white space do not matter."""
    return " ".join(text.split()).casefold()


class CertificateFiles:
    """Certificate files as read, by path, size and modification time.

    Loading a directory of tens of thousands of agencies read and parsed one certificate
    file per agency each time; a reload, with few files changed, now reads only those
    (and a file several agencies share, once). A file that changed in place gets a new
    size or time and is read again.
    """

    def __init__(self) -> None:
        self._read: dict[Path, tuple[tuple[int, int], RegisteredCertificate]] = {}

    def get(self, file: Path) -> RegisteredCertificate:
        """The certificate in ``file``; OSError or ValueError if it cannot be read."""
        stat = file.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        known = self._read.get(file)
        if known is not None and known[0] == stamp:
            return known[1]
        cert = x509.load_pem_x509_certificate(file.read_bytes())
        digest = hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()
        registered = RegisteredCertificate(digest, cert, str(file))
        self._read[file] = (stamp, registered)
        return registered


def _certificate(
    path: Path, index: int, kennung: str, ref: str, base: Path, files: CertificateFiles
) -> RegisteredCertificate:
    if ref.startswith("sha256:"):
        digest = ref.removeprefix("sha256:").replace(":", "").lower()
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise DirectoryError(
                f"{path}: agency[{index}] ({kennung}).certificates: bad fingerprint {ref!r}"
            )
        return RegisteredCertificate(digest, None, ref)
    file = Path(ref) if Path(ref).is_absolute() else base / ref
    try:
        return files.get(file)
    except (OSError, ValueError) as exc:
        raise DirectoryError(
            f"{path}: agency[{index}] ({kennung}).certificates: cannot load {file}: {exc}"
        ) from exc


def _encryption_certificate(
    where: str, ref: str, base: Path, files: CertificateFiles
) -> RegisteredCertificate:
    """An encryption certificate: a file (the key is needed, not only its fingerprint)
    whose keyUsage allows keyEncipherment or keyAgreement."""
    file = Path(ref) if Path(ref).is_absolute() else base / ref
    try:
        registered = files.get(file)
    except (OSError, ValueError) as exc:
        raise DirectoryError(f"{where}.encryption: cannot load {file}: {exc}") from exc
    cert = registered.certificate
    assert cert is not None  # read from a file
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is None or not (usage.key_encipherment or usage.key_agreement):
        raise DirectoryError(
            f"{where}.encryption: {file} is no encryption certificate (its keyUsage has "
            "neither keyEncipherment nor keyAgreement); make one with "
            "`xbroker pki issue KENNUNG NAME --encryption`"
        )
    return registered


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
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        parsed = DirectoryFile.model_validate(raw)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DirectoryError(f"{path}: cannot read directory: {exc}") from exc
    except ValidationError as exc:
        raise DirectoryError(_explain(path, raw, exc)) from exc
    return [(entry.kennung, entry.name) for entry in parsed.agency]
