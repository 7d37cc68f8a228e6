"""Offline resolution of schema locations: relative paths, URL maps, OASIS XML catalogs.

Standards never touch the network. Before lxml compiles a standard, every
``xs:import``/``xs:include``/``xs:redefine``/``xs:override`` reachable from its entry
schemas is resolved here to a local file; anything that does not resolve fails the load
with a StandardLoadError that names the file and the location. The lxml resolver then
only answers from that precomputed table, and the parser forbids network access, so a
forgotten mapping can neither hang nor leak a request.

Rules: a relative location resolves against the schema that names it and must stay inside
the standards root (the parent of the standard's folder, so ``../`` reaches sibling
folders). An absolute http(s) URL resolves through the standard's URL map, then its OASIS
catalog, and last the schemas this package ships under a stable URL (the XÖV base).
Other absolute URLs are refused.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from lxml import etree

from .errors import StandardLoadError

__all__ = [
    "CATALOG_NS",
    "SCHEMA_REFERENCES",
    "XSD_NS",
    "Locator",
    "OasisCatalog",
    "OfflineResolver",
    "collect_schema_files",
    "offline_parser",
    "parse_schema_file",
]

XSD_NS = "http://www.w3.org/2001/XMLSchema"
CATALOG_NS = "urn:oasis:names:tc:entity:xmlns:xml:catalog"
# The elements by which a schema pulls in another one.
SCHEMA_REFERENCES = tuple(
    f"{{{XSD_NS}}}{name}" for name in ("import", "include", "redefine", "override")
)


def offline_parser(resolver: etree.Resolver | None = None) -> etree.XMLParser:
    """A parser for schema and catalog files: no network, no DTD, no entity expansion."""
    parser = etree.XMLParser(
        no_network=True, resolve_entities=False, load_dtd=False, remove_comments=False
    )
    if resolver is not None:
        parser.resolvers.add(resolver)
    return parser


def _is_absolute_url(location: str) -> bool:
    return len(urlsplit(location).scheme) > 1  # one letter is a Windows drive


def _file_key(location: str) -> str:
    """The form a local path takes as a key, whatever way libxml2 spelled it."""
    if location.startswith("file:"):
        location = urlsplit(location).path
    return os.path.normpath(unquote(location))


def _table_key(location: str) -> str:
    """How an absolute location is looked up: remote URLs as written, files as paths."""
    remote = _is_absolute_url(location) and not location.startswith("file:")
    return location if remote else _file_key(location)


@dataclass(frozen=True, slots=True)
class OasisCatalog:
    """The subset of OASIS XML Catalogs that schema locations need.

    Supports ``uri``, ``system``, ``rewriteURI`` and ``rewriteSystem`` entries; the
    longest matching rewrite prefix wins, as the specification says.
    """

    path: Path
    exact: Mapping[str, Path] = field(default_factory=dict)
    rewrites: tuple[tuple[str, Path], ...] = ()

    @classmethod
    def read(cls, path: Path) -> OasisCatalog:
        try:
            tree = etree.parse(str(path), offline_parser())
        except (OSError, etree.XMLSyntaxError) as exc:
            raise StandardLoadError(f"{path}: cannot read XML catalog: {exc}") from exc
        base = path.parent
        exact: dict[str, Path] = {}
        rewrites: list[tuple[str, Path]] = []
        for entry in tree.getroot().iter():
            if not isinstance(entry.tag, str):
                continue
            tag = etree.QName(entry).localname
            if etree.QName(entry).namespace != CATALOG_NS:
                continue
            if tag in ("uri", "system"):
                name = entry.get("name" if tag == "uri" else "systemId")
                target = entry.get("uri")
                if name and target:
                    exact[name] = base / target
            elif tag in ("rewriteURI", "rewriteSystem"):
                start = entry.get(
                    "uriStartString" if tag == "rewriteURI" else "systemIdStartString"
                )
                prefix = entry.get("rewritePrefix")
                if start and prefix:
                    rewrites.append((start, base / prefix))
        rewrites.sort(key=lambda item: len(item[0]), reverse=True)
        return cls(path=path, exact=exact, rewrites=tuple(rewrites))

    def lookup(self, url: str) -> Path | None:
        if url in self.exact:
            return self.exact[url]
        for start, prefix in self.rewrites:
            if url.startswith(start):
                return prefix / url[len(start) :]
        return None


@dataclass(frozen=True, slots=True)
class Locator:
    """Turns a schemaLocation into a local file, or explains why it cannot."""

    boundary: Path
    url_map: Mapping[str, Path] = field(default_factory=dict)
    catalog: OasisCatalog | None = None
    # Schemas the package ships under a stable URL, consulted last.
    builtin: Mapping[str, Path] = field(default_factory=dict)

    def locate(self, location: str, referrer: Path) -> Path:
        if _is_absolute_url(location):
            return self._locate_url(location, referrer)
        target = Path(_file_key(str(referrer.parent / location)))
        if not target.is_relative_to(self.boundary):
            raise StandardLoadError(
                f"{referrer}: schemaLocation {location!r} leaves the standards folder "
                f"{self.boundary}"
            )
        return self._existing(target, location, referrer)

    def _locate_url(self, url: str, referrer: Path) -> Path:
        scheme = urlsplit(url).scheme.lower()
        if scheme == "file":
            return self._existing(Path(_file_key(url)), url, referrer)
        if scheme not in ("http", "https"):
            raise StandardLoadError(
                f"{referrer}: schemaLocation {url!r} has an unsupported scheme {scheme!r}"
            )
        target = self.url_map.get(url)
        if target is None and self.catalog is not None:
            target = self.catalog.lookup(url)
        if target is None:
            target = self.builtin.get(url)
        if target is None:
            raise StandardLoadError(
                f"{referrer}: schemaLocation {url!r} is not mapped to a local file; add it "
                "to [url_map] in the manifest or to the standard's XML catalog "
                "(schemas are never fetched from the network)"
            )
        return self._existing(Path(_file_key(str(target))), url, referrer)

    @staticmethod
    def _existing(target: Path, location: str, referrer: Path) -> Path:
        if not target.is_file():
            raise StandardLoadError(
                f"{referrer}: schemaLocation {location!r} resolves to {target}, "
                "which does not exist"
            )
        return target


def parse_schema_file(path: Path) -> etree._ElementTree:
    """Parse one schema file offline; a problem is a StandardLoadError naming the file."""
    try:
        return etree.parse(str(path), offline_parser())
    except (OSError, etree.XMLSyntaxError) as exc:
        raise StandardLoadError(f"{path}: cannot parse schema: {exc}") from exc


def collect_schema_files(entries: Sequence[Path], locator: Locator) -> dict[str, Path]:
    """Resolve every schema reachable from ``entries``.

    Returns a table from each location as libxml2 will ask for it (an absolute URL as
    written, or a normalised local path) to the local file that answers it.
    """
    pending = [Path(_file_key(str(entry))) for entry in entries]
    # lxml asks the resolver for the entry documents too.
    table: dict[str, Path] = {str(path): path for path in pending}
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        tree = parse_schema_file(path)
        for reference in tree.getroot().iter(*SCHEMA_REFERENCES):
            location = (reference.get("schemaLocation") or "").strip()
            if not location:
                continue
            target = locator.locate(location, path)
            absolute = location if _is_absolute_url(location) else str(path.parent / location)
            table[_table_key(absolute)] = target
            pending.append(target)
    return table


class OfflineResolver(etree.Resolver):
    """Answers lxml's schema loads from a precomputed table; never the network.

    A location missing from the table is refused with an empty document, so the schema
    compiler fails with a clear error instead of trying a fetch of its own.
    """

    def __init__(self, table: Mapping[str, Path]) -> None:
        super().__init__()
        self._table = dict(table)

    # lxml-stubs lag behind lxml: they omit ``context`` and ``resolve_filename``.
    def resolve(  # type: ignore[override]
        self, system_url: str | None, public_id: str | None, context: Any
    ) -> Any:
        if system_url is None:
            return None
        target = self._table.get(_table_key(system_url))
        if target is None:
            return self.resolve_string(
                f"<!-- {system_url} is not mapped to a local file -->", context, base_url=None
            )
        return self.resolve_filename(str(target), context)  # type: ignore[attr-defined]
