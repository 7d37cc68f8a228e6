"""A first manifest for a published release: what its XSDs say, written out as TOML.

A release such as XJustiz has dozens of entry schemas and over a hundred message types;
listing them by hand is where a manifest goes wrong. `survey` reads every XSD under a
folder (offline, nothing resolved over the network) and finds:

* the release's own namespace: the target namespace with the most global elements,
  among those that are not infrastructure a release imports (xmldsig, XAdES, xlink,
  GML, UBL's component namespaces, the XÖV base schemas): XWasser ships xmldsig, whose
  global elements outnumber XWasser's twelve message roots;
* its entry schemas: the files of that namespace that declare global elements;
* its message types: those global elements, each with its own name as the
  nachrichtentyp code, the XÖV convention (where a release codes them otherwise, as
  XWasser does, the codes are edited in);
* absolute schema locations (``http://…``) and, where a file of the same name lies in
  the folder, the ``[url_map]`` entry that keeps them offline; an OASIS catalog file, if
  the release ships one;
* which header the schemas declare: the XÖV g2g ``nachrichtenkopf.g2g`` (the manifest's
  defaults read it) or another one, whose XPaths the operator must write.

`render` writes the manifest. Header rules and samples cannot be read from schemas; the
draft says so where they go, and ``xbroker schemas load`` checks the result.
"""

from __future__ import annotations

import os
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from .errors import StandardLoadError
from .loader import BUILTIN_SCHEMAS
from .manifest import FILL_IN
from .resolution import CATALOG_NS, SCHEMA_REFERENCES, XSD_NS, parse_schema_file

__all__ = [
    "FOREIGN_NAMESPACES",
    "Draft",
    "default_identity",
    "is_foreign",
    "render",
    "survey",
    "unfilled",
]

_XSD = f"{{{XSD_NS}}}"
_G2G_HEADER = "nachrichtenkopf.g2g"
# Namespaces of schemas releases import for signatures, links, geometry, common
# components or the XÖV base: never a release's own. Prefixes, so that versions match.
FOREIGN_NAMESPACES = (
    "http://www.w3.org/",  # xmldsig, xmldsig11, xlink, xml, xmlenc, XML Schema
    "http://uri.etsi.org/",  # XAdES
    "http://www.opengis.net/",  # GML
    "urn:oasis:names:specification:ubl:schema:xsd:Common",  # UBL's components
    "urn:oasis:names:specification:ubl:schema:xsd:QualifiedDataTypes",
    "urn:oasis:names:specification:ubl:schema:xsd:UnqualifiedDataTypes",
    "urn:oasis:names:specification:ubl:schema:xsd:Signature",
    "urn:un:unece:uncefact:",  # the CCTS data types UBL builds on
    "http://xoev.de/schemata/",  # XÖV base: basisnachricht, code
    "http://xoev.de/latinchars/",
)

_FOLDER_NAME = re.compile(r"^([a-z][a-z0-9-]*?)[-_]v?(\d[\w.]*)$")


@dataclass(frozen=True)
class Draft:
    """What the XSDs of one release folder say about its manifest."""

    folder: Path
    namespace: str
    entries: tuple[str, ...]  # relative to the folder, POSIX separators
    roots: tuple[str, ...]
    url_map: dict[str, str]
    unresolved_urls: tuple[str, ...]
    catalog: str | None
    g2g_header: bool
    other_namespaces: dict[str, int]  # namespace -> schema files, beside the release's


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix()


def _files(folder: Path, suffix: str) -> list[Path]:
    """Files under ``folder`` ending in ``suffix``, also through links to a release's
    folders (an operator links a release rather than copy it)."""
    return sorted(
        Path(top) / name
        for top, _, names in os.walk(folder, followlinks=True)
        for name in names
        if name.lower().endswith(suffix)
    )


def _is_catalog(path: Path) -> bool:
    try:
        root = parse_schema_file(path).getroot()
    except StandardLoadError:
        return False
    return etree.QName(root).namespace == CATALOG_NS


def survey(folder: Path, namespace: str | None = None) -> Draft:
    """Read every ``*.xsd`` under ``folder``; ``namespace`` overrides the guess."""
    folder = folder.resolve()
    files = _files(folder, ".xsd")
    if not files:
        raise StandardLoadError(f"{folder}: no .xsd files")
    by_name: defaultdict[str, list[Path]] = defaultdict(list)
    for path in files:
        by_name[path.name].append(path)
    globals_by_file: dict[Path, list[str]] = {}
    namespace_of: dict[Path, str] = {}
    urls: set[str] = set()
    g2g_header = False
    # The release's own files, then what they reach by relative path (the XÖV base in a
    # sibling folder, say): only the header is looked for there.
    pending, seen = list(files), set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        root = parse_schema_file(path).getroot()
        if root.tag != f"{_XSD}schema":
            continue
        g2g_header = g2g_header or any(
            el.get("name") == _G2G_HEADER for el in root.iter(f"{_XSD}element")
        )
        for reference in root.iter(*SCHEMA_REFERENCES):
            location = (reference.get("schemaLocation") or "").strip()
            if location.startswith(("http://", "https://")):
                urls.add(location)
                target = BUILTIN_SCHEMAS.get(location)
            else:
                target = (path.parent / location).resolve() if location else None
            if target is not None and target.is_file():
                pending.append(target)
        if path.is_relative_to(folder):
            namespace_of[path] = root.get("targetNamespace") or ""
            globals_by_file[path] = [
                name for el in root.iterchildren(f"{_XSD}element") if (name := el.get("name"))
            ]
    weight: Counter[str] = Counter()
    for path, names in globals_by_file.items():
        weight[namespace_of[path]] += len(names)
    chosen = namespace if namespace is not None else _main_namespace(folder, weight)
    entries = sorted(p for p in globals_by_file if namespace_of[p] == chosen and globals_by_file[p])
    if not entries:
        raise StandardLoadError(f"{folder}: no schema declares global elements in {chosen!r}")
    url_map, unresolved = {}, []
    for url in sorted(urls):
        if url in BUILTIN_SCHEMAS:
            continue  # xbroker ships it (the bundled XÖV-style base)
        local = by_name.get(url.rstrip("/").rsplit("/", 1)[-1], [])
        if len(local) == 1:
            url_map[url] = _relative(local[0], folder)
        else:
            unresolved.append(url)
    catalogs = [p for p in _files(folder, ".xml") if _is_catalog(p)]
    others = Counter(ns for p, ns in namespace_of.items() if ns != chosen)
    return Draft(
        folder=folder,
        namespace=chosen,
        entries=tuple(_relative(p, folder) for p in entries),
        roots=tuple(sorted({name for p in entries for name in globals_by_file[p]})),
        url_map=url_map,
        unresolved_urls=tuple(unresolved),
        catalog=_relative(catalogs[0], folder) if catalogs else None,
        g2g_header=g2g_header,
        other_namespaces=dict(sorted(others.items())),
    )


def is_foreign(namespace: str) -> bool:
    """Whether ``namespace`` is infrastructure a release imports, never its own."""
    return namespace.startswith(FOREIGN_NAMESPACES)


def _main_namespace(folder: Path, weight: Counter[str]) -> str:
    ranked = [(count, ns) for ns, count in weight.items() if count and ns and not is_foreign(ns)]
    if not ranked:
        raise StandardLoadError(f"{folder}: no schema declares global elements in a namespace")
    ranked.sort(key=lambda item: (-item[0], item[1]))
    return ranked[0][1]


def default_identity(folder: Path) -> tuple[str, str]:
    """Name and version from a folder named like ``xjustiz-3.7.0`` (else ``release``, ``1``)."""
    found = _FOLDER_NAME.match(folder.resolve().name.lower())
    return (found.group(1), found.group(2)) if found else ("release", "1")


def _toml(text: str) -> str:
    """A TOML basic string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def unfilled(text: str) -> list[tuple[int, str]]:
    """The lines of a drafted manifest still to be filled in, with their numbers."""
    return [
        (number, line.strip())
        for number, line in enumerate(text.splitlines(), 1)
        if FILL_IN in line and not line.lstrip().startswith("#")
    ]


def render(draft: Draft, name: str, version: str) -> str:
    """The manifest text for ``draft``: complete where the schemas tell, marked where not."""
    lines = [
        f"# Drafted from the XSDs under {draft.folder.name}/ by `xbroker schemas init`.",
        "# Check it with `xbroker schemas load` and a sample message before serving it.",
        "",
        "[standard]",
        f"name = {_toml(name)}",
        f"version = {_toml(version)}",
        f"namespace = {_toml(draft.namespace)}",
        '# samples = ["samples/*.xml"]   # add sample messages: the load checks them',
    ]
    if draft.catalog is not None:
        lines.append(f"catalog = {_toml(draft.catalog)}")
    lines.append("schemas = [")
    lines += [f"  {_toml(entry)}," for entry in draft.entries]
    lines += ["]", "", "[namespaces]", f"tns = {_toml(draft.namespace)}", ""]
    lines += [
        "[message_types]",
        "# Root element = nachrichtentyp code, the XÖV convention; edit the codes where the",
        "# release codes its message types otherwise.",
    ]
    lines += [f"{_toml(root)} = {_toml(root)}" for root in draft.roots]
    lines.append("")
    if draft.g2g_header:
        lines += [
            "# The schemas declare the XÖV g2g header (nachrichtenkopf.g2g): the default",
            "# [header] rules read it as the XÖV basisnachricht has it, unqualified under",
            "# the root. Check them against a sample.",
        ]
    else:
        lines += [
            "# No nachrichtenkopf.g2g in these schemas: write the [header] XPaths (from the",
            "# root; see docs/standards.md, 'Manifest reference', and the examples in",
            "# examples/standards/). The manifest does not load while one is left to fill in.",
            "[header]",
            f'uuid = "{FILL_IN}: the element that identifies one message>"',
            '# identity = "transport"   # instead, where messages carry no identity of their own',
            f'created = "{FILL_IN}: the creation time>"',
            f'author = "{FILL_IN}: the author element>"',
            f'readers = "{FILL_IN}: the reader elements>"',
            "nachrichtentyp_in_header = false   # or the XPath of its code: nachrichtentyp = ...",
        ]
    if draft.url_map or draft.unresolved_urls:
        lines += ["", "[url_map]"]
        lines += [f"{_toml(url)} = {_toml(path)}" for url, path in draft.url_map.items()]
        lines += [
            f'# {_toml(url)} = "..."   # no single file of this name in the folder: add it'
            for url in draft.unresolved_urls
        ]
    return "\n".join(lines) + "\n"
