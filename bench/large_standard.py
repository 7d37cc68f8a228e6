"""Generate an external standard of the size of a published XÖV release (XJustiz-like).

Published releases ship 70+ XSD files and about 150 root elements; the bundled standards
are a handful of files. To measure how long loading and compiling such a release takes,
this module writes one into a folder, shaped the way real releases are:

* ``xjlarge-1.0/xsd/xjlarge.xsd`` is the entry; it includes one file per message group
  (``xsd/nachrichten/gruppe-NN.xsd``), each of which includes its content types
  (``../typen/typen-NN.xsd``, a nested relative path);
* every content-type file imports shared base types from a sibling folder of the standard
  (``../../../xjlarge-basis/basis.xsd``) and a code list by an absolute http URL that the
  standard's OASIS ``catalog.xml`` maps to ``codelisten/``;
* every message group imports the bundled XÖV base by its built-in URL, so each root
  extends ``Nachricht.G2G`` and carries the g2g header;
* ``manifest.toml`` names every root as a message type; one valid sample is written.

The returned folder is a standards root: pass it to ``Catalog.load``.
"""

from __future__ import annotations

from pathlib import Path

from xta_schemas.loader import XOEV_BASE_URL

__all__ = [
    "CODE_LIST_URL",
    "NAMESPACE",
    "STANDARD_KEY",
    "message_type_code",
    "write_large_standard",
]

STANDARD_KEY = "xjlarge/1.0"
NAMESPACE = "http://www.xbroker.example/xjlarge/1.0"
BASE_NAMESPACE = "http://www.xbroker.example/xjlarge/basis/1.0"
CODE_NAMESPACE = "http://www.xbroker.example/xjlarge/codes/verfahrensart/1.0"
CODE_LIST_URL = "http://codes.xbroker.example/xjlarge/verfahrensart/1.0/verfahrensart.xsd"
XOEV_NAMESPACE = "http://www.xbroker.example/xoev/basis/1.0"

_STANDARD_FOLDER = "xjlarge-1.0"
_BASE_FOLDER = "xjlarge-basis"
# Entry, base types and code list: the files besides the message groups and their types.
_FIXED_FILES = 3
_HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'
_XS = 'xmlns:xs="http://www.w3.org/2001/XMLSchema"'


def message_type_code(index: int, groups: int) -> str:
    """The nachrichtentyp code (and root local name) of message ``index``."""
    return f"nachricht.gruppe{index % groups:02d}.{index:04d}"


def write_large_standard(folder: Path, files: int = 75, roots: int = 150) -> Path:
    """Write the standard into ``folder`` (created if missing) and return the standards root.

    ``files`` is the number of XSD files written (at least 5), ``roots`` the number of
    root elements, each a message type of its own (at least 1).
    """
    if files < _FIXED_FILES + 2:
        raise ValueError(f"files must be at least {_FIXED_FILES + 2}, not {files}")
    if roots < 1:
        raise ValueError(f"roots must be at least 1, not {roots}")
    groups = (files - _FIXED_FILES) // 2
    spare = (files - _FIXED_FILES) % 2  # an odd count adds one shared-types file
    standard = folder / _STANDARD_FOLDER
    for sub in ("xsd/nachrichten", "xsd/typen", "codelisten", "samples"):
        (standard / sub).mkdir(parents=True, exist_ok=True)
    (folder / _BASE_FOLDER).mkdir(parents=True, exist_ok=True)

    (folder / _BASE_FOLDER / "basis.xsd").write_text(_base_schema(), encoding="utf-8")
    (standard / "codelisten" / "verfahrensart.xsd").write_text(_code_list(), encoding="utf-8")
    (standard / "catalog.xml").write_text(_catalog(), encoding="utf-8")
    (standard / "xsd" / "xjlarge.xsd").write_text(_entry(groups, spare), encoding="utf-8")
    if spare:
        (standard / "xsd" / "typen" / "gemeinsam.xsd").write_text(
            _schema(
                "",
                '  <xs:simpleType name="Bemerkung">\n'
                '    <xs:restriction base="xs:string"><xs:maxLength value="400"/>'
                "</xs:restriction>\n  </xs:simpleType>\n",
            ),
            encoding="utf-8",
        )
    members: list[list[int]] = [[] for _ in range(groups)]
    for index in range(roots):
        members[index % groups].append(index)
    for group, indices in enumerate(members):
        (standard / "xsd" / "nachrichten" / f"gruppe-{group:02d}.xsd").write_text(
            _group(group, indices, groups), encoding="utf-8"
        )
        (standard / "xsd" / "typen" / f"typen-{group:02d}.xsd").write_text(
            _types(indices), encoding="utf-8"
        )
    (standard / "manifest.toml").write_text(_manifest(roots, groups), encoding="utf-8")
    (standard / "samples" / "nachricht-0000.xml").write_text(
        _sample(message_type_code(0, groups)), encoding="utf-8"
    )
    return folder


def _schema(imports: str, body: str, namespace: str = NAMESPACE) -> str:
    return (
        f"{_HEAD}<xs:schema {_XS}\n"
        f'           xmlns:jl="{NAMESPACE}"\n'
        f'           xmlns:jb="{BASE_NAMESPACE}"\n'
        f'           xmlns:va="{CODE_NAMESPACE}"\n'
        f'           xmlns:xoev="{XOEV_NAMESPACE}"\n'
        f'           targetNamespace="{namespace}"\n'
        '           elementFormDefault="unqualified">\n'
        f"{imports}{body}</xs:schema>\n"
    )


def _import(namespace: str, location: str) -> str:
    return f'  <xs:import namespace="{namespace}" schemaLocation="{location}"/>\n'


def _base_schema() -> str:
    body = (
        '  <xs:simpleType name="Aktenzeichen">\n'
        '    <xs:restriction base="xs:token"><xs:pattern value="[0-9A-Za-z /.\\-]{1,40}"/>'
        "</xs:restriction>\n  </xs:simpleType>\n"
        '  <xs:complexType name="Gericht">\n    <xs:sequence>\n'
        '      <xs:element name="bezeichnung" type="xs:string"/>\n'
        '      <xs:element name="gemeindeschluessel" type="xs:token"/>\n'
        "    </xs:sequence>\n  </xs:complexType>\n"
    )
    return _schema("", body, BASE_NAMESPACE)


def _code_list() -> str:
    values = "".join(
        f'      <xs:enumeration value="{value}"/>\n'
        for value in ("zivil", "straf", "familie", "verwaltung", "insolvenz")
    )
    body = (
        f'  <xs:simpleType name="Verfahrensart">\n    <xs:restriction base="xs:token">\n'
        f"{values}    </xs:restriction>\n  </xs:simpleType>\n"
    )
    return f"<!-- Code list published at {CODE_LIST_URL} -->\n" + _schema(
        "", body, CODE_NAMESPACE
    ).removeprefix(_HEAD)


def _catalog() -> str:
    return (
        f'{_HEAD}<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">\n'
        f'  <uri name="{CODE_LIST_URL}" uri="codelisten/verfahrensart.xsd"/>\n'
        "</catalog>\n"
    )


def _entry(groups: int, spare: int) -> str:
    includes = "".join(
        f'  <xs:include schemaLocation="nachrichten/gruppe-{group:02d}.xsd"/>\n'
        for group in range(groups)
    )
    if spare:
        includes += '  <xs:include schemaLocation="typen/gemeinsam.xsd"/>\n'
    return _schema("", includes)


def _group(group: int, indices: list[int], groups: int) -> str:
    imports = _import(XOEV_NAMESPACE, XOEV_BASE_URL) + (
        f'  <xs:include schemaLocation="../typen/typen-{group:02d}.xsd"/>\n'
    )
    body = "".join(
        f'  <xs:complexType name="Nachricht.{index:04d}">\n'
        "    <xs:complexContent>\n"
        '      <xs:extension base="xoev:Nachricht.G2G">\n'
        "        <xs:sequence>\n"
        f'          <xs:element name="inhalt" type="jl:Inhalt.{index:04d}"/>\n'
        "        </xs:sequence>\n"
        "      </xs:extension>\n"
        "    </xs:complexContent>\n"
        "  </xs:complexType>\n"
        f'  <xs:element name="{message_type_code(index, groups)}" '
        f'type="jl:Nachricht.{index:04d}"/>\n'
        for index in indices
    )
    return _schema(imports, body)


def _types(indices: list[int]) -> str:
    imports = (
        _import(XOEV_NAMESPACE, XOEV_BASE_URL)
        + _import(BASE_NAMESPACE, f"../../../{_BASE_FOLDER}/basis.xsd")
        + _import(CODE_NAMESPACE, CODE_LIST_URL)
    )
    body = "".join(
        f'  <xs:complexType name="Inhalt.{index:04d}">\n'
        "    <xs:sequence>\n"
        '      <xs:element name="aktenzeichen" type="jb:Aktenzeichen"/>\n'
        '      <xs:element name="verfahrensart" type="va:Verfahrensart"/>\n'
        '      <xs:element name="gericht" type="jb:Gericht" minOccurs="0"/>\n'
        '      <xs:element name="gemeindeschluessel" type="xoev:Gemeindeschluessel"/>\n'
        "    </xs:sequence>\n"
        "  </xs:complexType>\n"
        for index in indices
    )
    return _schema(imports, body)


def _manifest(roots: int, groups: int) -> str:
    codes = "".join(
        f'"{code}" = "{code}"\n'
        for code in (message_type_code(index, groups) for index in range(roots))
    )
    return (
        "# A release the size of XJustiz, generated for the catalog benchmark.\n\n"
        "[standard]\n"
        'name = "xjlarge"\n'
        'version = "1.0"\n'
        'title = "Generated large standard"\n'
        f'namespace = "{NAMESPACE}"\n'
        'schemas = ["xsd/xjlarge.xsd"]\n'
        'samples = ["samples/*.xml"]\n'
        'catalog = "catalog.xml"\n'
        'namespace_family = "http://www.xbroker.example/xjlarge/"\n\n'
        "[namespaces]\n"
        f'jl = "{NAMESPACE}"\n\n'
        f"[message_types]\n{codes}\n"
        "[routing]\n"
        'ags = "inhalt/gemeindeschluessel"\n'
    )


def _party(tag: str, kennung: str, name: str) -> str:
    return (
        f"    <{tag}>\n"
        '      <verzeichnisdienst listURI="urn:xoev-de:xta:codeliste:verzeichnisdienst"'
        ' listVersionID="1">\n'
        "        <code>DVDV</code>\n"
        "      </verzeichnisdienst>\n"
        f"      <kennung>{kennung}</kennung>\n"
        f"      <name>{name}</name>\n"
        f"    </{tag}>\n"
    )


def _sample(code: str) -> str:
    return (
        f'{_HEAD}<jl:{code} xmlns:jl="{NAMESPACE}"\n'
        '    produkt="Hamburg Service-Portal" produktversion="4.2" test="true">\n'
        "  <nachrichtenkopf.g2g>\n"
        "    <identifikation.nachricht>\n"
        "      <nachrichtenUUID>5a0f3c9e-2b7d-4e61-9c1a-7d3e8f2b4a10</nachrichtenUUID>\n"
        '      <nachrichtentyp listURI="urn:xoev-de:xjlarge:codeliste:nachrichtentyp"'
        ' listVersionID="1.0">\n'
        f"        <code>{code}</code>\n"
        "      </nachrichtentyp>\n"
        "      <erstellungszeitpunkt>2026-11-28T10:15:00+01:00</erstellungszeitpunkt>\n"
        "    </identifikation.nachricht>\n"
        + _party("leser", "jus:02000000", "Amtsgericht Hamburg")
        + _party("autor", "osi:hh-portal", "Hamburg Service-Portal")
        + "  </nachrichtenkopf.g2g>\n"
        "  <inhalt>\n"
        "    <aktenzeichen>12 C 345/26</aktenzeichen>\n"
        "    <verfahrensart>zivil</verfahrensart>\n"
        "    <gericht>\n"
        "      <bezeichnung>Amtsgericht Hamburg</bezeichnung>\n"
        "      <gemeindeschluessel>02000000</gemeindeschluessel>\n"
        "    </gericht>\n"
        "    <gemeindeschluessel>02000000</gemeindeschluessel>\n"
        "  </inhalt>\n"
        f"</jl:{code}>\n"
    )
