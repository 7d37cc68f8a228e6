"""Load one standard folder: manifest, offline schema resolution, compilation, XPaths."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from lxml import etree

from .errors import StandardLoadError
from .manifest import Manifest, read_manifest
from .report import DetailedReporter
from .resolution import (
    XSD_NS,
    Locator,
    OasisCatalog,
    OfflineResolver,
    collect_schema_files,
    offline_parser,
)
from .standard import Standard

__all__ = ["BUILTIN_SCHEMAS", "XOEV_BASE_URL", "load_standard"]

XOEV_BASE_URL = "http://www.xbroker.example/xoev/basis/1.0/xoev-basis.xsd"
# External standards import the bundled XÖV base by this URL; it never leaves the machine.
BUILTIN_SCHEMAS = {
    XOEV_BASE_URL: Path(__file__).parent / "bundled" / "xoev-base" / "xoev-basis.xsd"
}


def load_standard(folder: Path, boundary: Path | None = None) -> Standard:
    """Load the standard in ``folder``; relative schema references stay below ``boundary``.

    ``boundary`` defaults to the folder's parent, so schemas may reach sibling folders
    with ``../`` (as the bundled standards do for the shared XÖV base).
    """
    started = time.perf_counter()
    folder = folder.resolve()
    manifest = read_manifest(folder)
    locator = Locator(
        boundary=(boundary or folder.parent).resolve(),
        url_map={url: folder / target for url, target in manifest.url_map.items()},
        catalog=OasisCatalog.read(folder / manifest.standard.catalog)
        if manifest.standard.catalog
        else None,
        builtin=BUILTIN_SCHEMAS,
    )
    entries = tuple(folder / name for name in manifest.standard.schemas)
    for entry in entries:
        if not entry.is_file():
            raise StandardLoadError(f"{folder}: entry schema {entry.name} does not exist")
    table = collect_schema_files(entries, locator)
    schema = _compile(folder, entries, table, manifest.standard.namespace)
    _check_roots(folder, manifest, entries, table)
    try:
        standard = Standard(
            manifest,
            schema,
            DetailedReporter(entries, table, manifest.namespaces),
            _samples(manifest),
            tuple(sorted(set(table.values()))),
            time.perf_counter() - started,
        )
    except etree.XPathSyntaxError as exc:
        raise StandardLoadError(f"{folder}: an XPath in the manifest is invalid: {exc}") from exc
    return standard


def _compile(
    folder: Path, entries: tuple[Path, ...], table: Mapping[str, Path], namespace: str
) -> etree.XMLSchema:
    parser = offline_parser(OfflineResolver(table))
    try:
        if len(entries) == 1:
            document = etree.parse(str(entries[0]), parser)
        else:
            document = etree.ElementTree(_driver(folder, entries, namespace, parser))
        return etree.XMLSchema(document)
    except (etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
        raise StandardLoadError(f"{folder}: schemas do not compile: {exc}") from exc


def _driver(
    folder: Path, entries: tuple[Path, ...], namespace: str, parser: etree.XMLParser
) -> etree._Element:
    """A schema that includes every entry schema of the standard's namespace.

    libxml2 honours only the first import of a namespace, so several entry schemas are
    included instead. Each is named by its absolute path, percent-escaped where needed,
    which libxml2 takes for the same document as a relative include of that file: an
    entry that another entry includes too (as XJustiz's do) is loaded once, not declared
    twice. A ``file:`` URL would be another document to libxml2.
    """
    includes = "".join(
        f"<xs:include schemaLocation={quoteattr(quote(str(entry)))}/>" for entry in entries
    )
    text = (
        f'<xs:schema xmlns:xs="{XSD_NS}" targetNamespace={quoteattr(namespace)}>'
        f"{includes}</xs:schema>"
    )
    return etree.fromstring(text, parser, base_url=str(folder / "driver.xsd"))


def _check_roots(
    folder: Path, manifest: Manifest, entries: tuple[Path, ...], table: Mapping[str, Path]
) -> None:
    """Every root element the manifest names must be a global element of the namespace."""
    declared: set[str] = set()
    for path in {*entries, *table.values()}:
        root = etree.parse(str(path), offline_parser()).getroot()
        if root.get("targetNamespace") != manifest.standard.namespace:
            continue
        declared.update(
            name
            for element in root.iterchildren(f"{{{XSD_NS}}}element")
            if (name := element.get("name")) is not None
        )
    missing = sorted(set(manifest.message_types) - declared)
    if missing:
        raise StandardLoadError(
            f"{folder}: manifest names root elements the schemas do not declare in "
            f"{manifest.standard.namespace}: {', '.join(missing)}"
        )


def _samples(manifest: Manifest) -> tuple[Path, ...]:
    found: list[Path] = []
    for pattern in manifest.standard.samples:
        matches = sorted(manifest.folder.glob(pattern))
        if not matches:
            raise StandardLoadError(f"{manifest.folder}: sample {pattern!r} matches no file")
        found.extend(matches)
    return tuple(found)
