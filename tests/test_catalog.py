"""The catalog: identifying messages, loading external standards offline, load errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lxml import etree

from broker.errors import Reason
from tests.standards_support import edit
from xta_schemas import Catalog, MessageError, StandardLoadError
from xta_schemas.loader import XOEV_BASE_URL
from xta_schemas.resolution import OasisCatalog
from xta_schemas.samples import read_sample, sample_root

FIXTURES = Path(__file__).parent / "fixtures" / "standards"
XSOZIAL = FIXTURES / "xsozial-1.0"
CODE_LIST_URL = "https://codes.xbroker.example/xsozial/leistungsart/1.0/leistungsart.xsd"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


@pytest.fixture
def fixtures_copy(tmp_path: Path) -> Path:
    """A private copy of the fixture standards, to break on purpose."""
    copy = tmp_path / "standards"
    shutil.copytree(FIXTURES, copy)
    return copy


def _root(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode())


def _identify_error(catalog: Catalog, root: etree._Element) -> MessageError:
    with pytest.raises(MessageError) as caught:
        catalog.identify(root)
    return caught.value


# -- identify -------------------------------------------------------------------------------


def test_unknown_root_in_a_known_namespace_is_unknown_message_type(catalog: Catalog) -> None:
    root = _root('<m:meldung.abmeldung.0300 xmlns:m="http://www.xbroker.example/xmeld/1.1"/>')
    error = _identify_error(catalog, root)
    assert error.reason is Reason.UNKNOWN_MESSAGE_TYPE
    assert "xmeld/1.1 has no message type with root element 'meldung.abmeldung.0300'" in str(error)


def test_unknown_namespace_is_unknown_message_type(catalog: Catalog) -> None:
    root = _root('<x:antrag.0100 xmlns:x="urn:example:xsonstiges"/>')
    assert _identify_error(catalog, root).reason is Reason.UNKNOWN_MESSAGE_TYPE


def test_root_without_namespace_is_unknown_message_type(catalog: Catalog) -> None:
    assert _identify_error(catalog, _root("<meldung.anmeldung.0200/>")).reason is (
        Reason.UNKNOWN_MESSAGE_TYPE
    )


def test_retired_version_is_unsupported_version(catalog: Catalog) -> None:
    root = _root('<m:meldung.anmeldung.0200 xmlns:m="http://www.xbroker.example/xmeld/0.9"/>')
    error = _identify_error(catalog, root)
    assert error.reason is Reason.UNSUPPORTED_VERSION
    assert error.detail == "xmeld 0.9 is no longer in service; in service: 1.0, 1.1"


def test_unknown_version_in_a_standards_namespace_family_is_unsupported_version(
    catalog: Catalog,
) -> None:
    root = _root('<m:meldung.anmeldung.0200 xmlns:m="http://www.xbroker.example/xmeld/2.0"/>')
    error = _identify_error(catalog, root)
    assert error.reason is Reason.UNSUPPORTED_VERSION
    assert "belongs to xmeld, in service only in version(s) 1.0, 1.1" in error.detail


def test_identify_returns_standard_and_message_type(catalog: Catalog) -> None:
    root = sample_root(catalog.get("xbau/1.0"), "bau.antrag.0200")
    standard, message_type = catalog.identify(root)
    assert (standard.key, message_type.code, message_type.root) == (
        "xbau/1.0",
        "bau.antrag.0200",
        "bau.antrag.0200",
    )


def test_get_unknown_key_raises_key_error(catalog: Catalog) -> None:
    with pytest.raises(KeyError):
        catalog.get("xmeld/9.9")


# -- external standards ---------------------------------------------------------------------


def test_external_standard_loads_through_nested_sibling_and_catalog_references(
    no_network: None,
) -> None:
    catalog = Catalog.load([FIXTURES])
    standard = catalog.get("xsozial/1.0")
    assert {path.relative_to(FIXTURES).as_posix() for path in standard.schema_files} == {
        "xsozial-1.0/xsd/xsozial.xsd",
        "xsozial-1.0/xsd/parts/antrag.xsd",
        "common/kopf.xsd",
        "xsozial-1.0/codelisten/leistungsart.xsd",
    }


def test_external_standard_folder_may_be_named_directly() -> None:
    catalog = Catalog.load([XSOZIAL], bundled=False)
    assert [standard.key for standard in catalog.standards] == ["xsozial/1.0"]


def test_external_sample_is_identified_read_and_valid() -> None:
    catalog = Catalog.load([FIXTURES])
    root = read_sample(XSOZIAL / "samples" / "leistungsantrag-0100.xml")
    standard, _ = catalog.identify(root)
    standard.validate(root)
    header = standard.header(root)
    assert (header.uuid, header.nachrichtentyp, header.list_uri, header.test) == (
        "2f1d0c7e-8a41-4d7b-9a39-5d2b6c0e4f11",
        "leistungsantrag.0100",
        "urn:xbroker:test:nachrichtentyp",
        True,
    )
    assert (header.author.kennung, header.author.verzeichnisdienst, header.readers) == (
        "osi:hh-portal",
        None,
        (),
    )
    assert standard.routing_facts(root) == {"ags": "01060063"}


def test_external_standard_reports_issues_with_its_prefixes_offline(no_network: None) -> None:
    standard = Catalog.load([XSOZIAL], bundled=False).get("xsozial/1.0")
    root = read_sample(XSOZIAL / "samples" / "leistungsantrag-0100.xml")
    leistungsart = root.find("{http://www.xbroker.example/xsozial/1.0}leistungsart")
    assert leistungsart is not None
    leistungsart.text = "rente"
    with pytest.raises(MessageError) as caught:
        standard.validate(root)
    issue = caught.value.issues[0]
    assert issue.path == "/soz:leistungsantrag.0100/soz:leistungsart"
    assert issue.reason.startswith("value '[value]': value must be one of")  # xmlschema's words


def test_unmapped_absolute_url_fails_fast_naming_file_and_location(
    fixtures_copy: Path, no_network: None
) -> None:
    edit(fixtures_copy / "xsozial-1.0" / "manifest.toml", 'catalog = "catalog.xml"\n', "")
    # no_network turns any attempt to fetch the URL into a failure of its own.
    with pytest.raises(StandardLoadError) as caught:
        Catalog.load([fixtures_copy])
    message = str(caught.value)
    assert str(fixtures_copy / "xsozial-1.0" / "xsd" / "parts" / "antrag.xsd") in message
    assert CODE_LIST_URL in message
    assert "never fetched from the network" in message


def test_url_map_in_the_manifest_replaces_a_catalog(fixtures_copy: Path, no_network: None) -> None:
    manifest = fixtures_copy / "xsozial-1.0" / "manifest.toml"
    edit(manifest, 'catalog = "catalog.xml"\n', "")
    with manifest.open("a", encoding="utf-8") as handle:
        handle.write(f'\n[url_map]\n"{CODE_LIST_URL}" = "codelisten/leistungsart.xsd"\n')
    assert Catalog.load([fixtures_copy]).get("xsozial/1.0")


def test_catalog_rewrite_uri_maps_a_whole_url_prefix(fixtures_copy: Path) -> None:
    (fixtures_copy / "xsozial-1.0" / "catalog.xml").write_text(
        '<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">'
        '<rewriteURI uriStartString="https://codes.xbroker.example/" rewritePrefix="remote/"/>'
        '<rewriteURI uriStartString="https://codes.xbroker.example/xsozial/leistungsart/1.0/"'
        ' rewritePrefix="codelisten/"/></catalog>'
    )
    assert Catalog.load([fixtures_copy]).get("xsozial/1.0")


def test_oasis_catalog_prefers_exact_entries_over_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "catalog.xml"
    path.write_text(
        '<catalog xmlns="urn:oasis:names:tc:entity:xmlns:xml:catalog">'
        '<rewriteSystem systemIdStartString="http://a.example/" rewritePrefix="a/"/>'
        '<system systemId="http://a.example/x.xsd" uri="exact/x.xsd"/></catalog>'
    )
    catalog = OasisCatalog.read(path)
    assert catalog.lookup("http://a.example/x.xsd") == tmp_path / "exact" / "x.xsd"
    assert catalog.lookup("http://a.example/b/y.xsd") == tmp_path / "a" / "b" / "y.xsd"
    assert catalog.lookup("http://b.example/y.xsd") is None


def test_missing_relative_schema_names_file_and_location(fixtures_copy: Path) -> None:
    (fixtures_copy / "common" / "kopf.xsd").unlink()
    with pytest.raises(StandardLoadError) as caught:
        Catalog.load([fixtures_copy])
    assert "antrag.xsd: schemaLocation '../../../common/kopf.xsd' resolves to" in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_relative_location_may_not_leave_the_standards_root(fixtures_copy: Path) -> None:
    edit(
        fixtures_copy / "xsozial-1.0" / "xsd" / "parts" / "antrag.xsd",
        "../../../common/kopf.xsd",
        "../../../../common/kopf.xsd",
    )
    with pytest.raises(StandardLoadError, match="leaves the standards folder"):
        Catalog.load([fixtures_copy])


def test_file_url_location_resolves_locally(fixtures_copy: Path, no_network: None) -> None:
    kopf = (fixtures_copy / "common" / "kopf.xsd").as_uri()
    edit(
        fixtures_copy / "xsozial-1.0" / "xsd" / "parts" / "antrag.xsd",
        "../../../common/kopf.xsd",
        kopf,
    )
    assert Catalog.load([fixtures_copy]).get("xsozial/1.0")


def test_location_with_other_scheme_is_refused(fixtures_copy: Path, no_network: None) -> None:
    edit(
        fixtures_copy / "xsozial-1.0" / "xsd" / "parts" / "antrag.xsd",
        CODE_LIST_URL,
        "ftp://codes.xbroker.example/leistungsart.xsd",
    )
    with pytest.raises(StandardLoadError, match="unsupported scheme 'ftp'"):
        Catalog.load([fixtures_copy])


def test_schema_that_does_not_compile_is_a_load_error(fixtures_copy: Path) -> None:
    edit(
        fixtures_copy / "xsozial-1.0" / "xsd" / "xsozial.xsd",
        'type="soz:Leistungsantrag"',
        'type="soz:Fehlt"',
    )
    with pytest.raises(StandardLoadError, match="schemas do not compile"):
        Catalog.load([fixtures_copy])


def test_manifest_naming_an_undeclared_root_is_a_load_error(fixtures_copy: Path) -> None:
    manifest = fixtures_copy / "xsozial-1.0" / "manifest.toml"
    edit(
        manifest, '"leistungsantrag.0100" = "leistungsantrag.0100"', '"antrag.0100" = "antrag.0100"'
    )
    with pytest.raises(StandardLoadError, match=r"do not declare .*: antrag\.0100"):
        Catalog.load([fixtures_copy])


def test_manifest_without_message_types_is_a_load_error(fixtures_copy: Path) -> None:
    manifest = fixtures_copy / "xsozial-1.0" / "manifest.toml"
    edit(manifest, '[message_types]\n"leistungsantrag.0100" = "leistungsantrag.0100"\n', "")
    with pytest.raises(StandardLoadError, match=r"manifest.toml: invalid manifest: message_types"):
        Catalog.load([fixtures_copy])


def test_manifest_with_invalid_xpath_is_a_load_error(fixtures_copy: Path) -> None:
    edit(
        fixtures_copy / "xsozial-1.0" / "manifest.toml",
        'uuid = "kopf:kopf/kopf:id"',
        'uuid = "kopf:kopf/["',
    )
    with pytest.raises(StandardLoadError, match="XPath in the manifest is invalid"):
        Catalog.load([fixtures_copy])


def test_folder_without_manifest_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(StandardLoadError, match=r"holds no manifest\.toml"):
        Catalog.load([tmp_path])


def test_the_same_standard_twice_is_a_load_error() -> None:
    with pytest.raises(StandardLoadError, match=r"xsozial/1\.0 is already served by"):
        Catalog.load([FIXTURES, XSOZIAL])


def test_external_standard_imports_the_bundled_xoev_base_by_its_url(
    tmp_path: Path, catalog: Catalog, no_network: None
) -> None:
    folder = tmp_path / "xpruef-1.0"
    folder.mkdir()
    (folder / "xpruef.xsd").write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"'
        ' xmlns:xoev="http://www.xbroker.example/xoev/basis/1.0" targetNamespace="urn:xpruef:1.0">'
        '<xs:import namespace="http://www.xbroker.example/xoev/basis/1.0"'
        f' schemaLocation="{XOEV_BASE_URL}"/>'
        '<xs:element name="pruef.0100"><xs:complexType><xs:complexContent>'
        '<xs:extension base="xoev:Nachricht.G2G"><xs:sequence>'
        '<xs:element name="hinweis" type="xoev:Text"/>'
        "</xs:sequence></xs:extension></xs:complexContent></xs:complexType></xs:element>"
        "</xs:schema>"
    )
    (folder / "manifest.toml").write_text(
        '[standard]\nname = "xpruef"\nversion = "1.0"\nnamespace = "urn:xpruef:1.0"\n'
        'schemas = ["xpruef.xsd"]\n[message_types]\n"pruef.0100" = "pruef.0100"\n'
    )
    standard = Catalog.load([folder], bundled=False).get("xpruef/1.0")
    root = sample_root(catalog.get("xmeld/1.0"), "meldung.anmeldung.ablehnung.0202")
    root.tag = "{urn:xpruef:1.0}pruef.0100"
    for content in list(root)[1:]:
        root.remove(content)
    etree.SubElement(root, "hinweis").text = "Bitte prüfen."
    code = root.find("nachrichtenkopf.g2g/identifikation.nachricht/nachrichtentyp/code")
    assert code is not None
    code.text = "pruef.0100"
    standard.validate(root)
    assert standard.header(root).nachrichtentyp == "pruef.0100"
