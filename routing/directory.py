"""The loaded directory and the lookups routing makes of it.

What a directory file holds and how it is checked: ``routing.directory_file``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from routing.agency import ANY_REGION, Agency
from routing.certificates import CertificateFiles
from routing.directory_file import read_agencies

__all__ = ["Directory"]


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
        return cls(read_agencies(path, certificate_dir or path.parent, files), source=path)


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
