"""Shapes that published XÖV releases have and the first fixtures did not.

Each fixture under ``tests/fixtures/standards/shapes/`` reproduces, with our own element
names, one way a real release is put together (see docs/standards.md, "Published XÖV
releases"): the release must load unchanged, with only a manifest next to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lxml import etree

from broker.errors import Reason
from tests.standards_support import edit
from xta_schemas import Catalog, MessageError, StandardLoadError
from xta_schemas.samples import sample_root

SHAPES = Path(__file__).parent / "fixtures" / "standards" / "shapes"
XGERICHT = SHAPES / "xgericht-1.0"
XSOZIAL = Path(__file__).parent / "fixtures" / "standards" / "xsozial-1.0"
G = "{urn:xbroker-test:xgericht}"


@pytest.fixture(scope="module")
def xgericht_catalog() -> Catalog:
    return Catalog.load([XGERICHT], bundled=False)


@pytest.fixture
def shapes_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "shapes"
    shutil.copytree(SHAPES, copy)
    return copy


def _header_error(catalog: Catalog, root: etree._Element) -> MessageError:
    standard, _ = catalog.identify(root)
    with pytest.raises(MessageError) as caught:
        standard.header(root)
    assert caught.value.reason is Reason.HEADER_INVALID
    return caught.value


# -- several entry schemas that include one another ------------------------------------


def test_entry_schema_that_another_entry_includes_is_declared_once(
    xgericht_catalog: Catalog, no_network: None
) -> None:
    standard = xgericht_catalog.get("xgericht/1.0")
    assert set(standard.message_types) == {
        "nachricht.basis.eingangsbestaetigung.0005001",
        "nachricht.antrag.klage.0200001",
    }


def test_schema_reached_by_two_relative_spellings_is_one_file(xgericht_catalog: Catalog) -> None:
    files = xgericht_catalog.get("xgericht/1.0").schema_files
    assert [path.name for path in files].count("code.xsd") == 1
    assert len(files) == 4


def test_entry_schemas_in_a_folder_with_spaces_load(tmp_path: Path, no_network: None) -> None:
    folder = tmp_path / "Release & Co" / "xgericht-1.0"
    shutil.copytree(XGERICHT, folder)
    assert Catalog.load([folder], bundled=False).get("xgericht/1.0")


def test_sample_of_the_release_shape_is_identified_and_valid(xgericht_catalog: Catalog) -> None:
    standard = xgericht_catalog.get("xgericht/1.0")
    root = sample_root(standard)
    found, message_type = xgericht_catalog.identify(root)
    assert found is standard
    assert message_type.code == "nachricht.antrag.klage.0200001"
    standard.validate(root)


# -- header rules the manifest states --------------------------------------------------


def test_header_without_nachrichtentyp_takes_the_type_from_the_root(
    xgericht_catalog: Catalog,
) -> None:
    standard = xgericht_catalog.get("xgericht/1.0")
    header = standard.header(sample_root(standard))
    assert header.nachrichtentyp == "nachricht.antrag.klage.0200001"
    assert header.uuid == "6f1c2a7e-3b9d-4c51-9e0a-2d4b8f7c1a35"


def test_party_kennung_follows_the_pattern_of_the_manifest(xgericht_catalog: Catalog) -> None:
    standard = xgericht_catalog.get("xgericht/1.0")
    header = standard.header(sample_root(standard))
    assert header.author.kennung == "G2001"
    assert header.author.name == "Amtsgericht Musterstadt"
    assert [reader.kennung for reader in header.readers] == ["G2002"]


def test_kennung_outside_the_pattern_of_the_manifest_is_header_invalid(
    xgericht_catalog: Catalog,
) -> None:
    root = sample_root(xgericht_catalog.get("xgericht/1.0"))
    code = root.find(f"{G}nachrichtenkopf/{G}empfaenger/{G}gericht/code")
    assert code is not None
    code.text = "psw:02000000"
    assert "'^G[0-9]{4}$'" in _header_error(xgericht_catalog, root).detail


def test_kennung_pattern_that_is_no_regular_expression_is_a_load_error(
    shapes_copy: Path,
) -> None:
    manifest = shapes_copy / "xgericht-1.0" / "manifest.toml"
    edit(manifest, 'kennung_pattern = "^G[0-9]{4}$"', 'kennung_pattern = "^G[0-9"')
    with pytest.raises(StandardLoadError, match="kennung_pattern"):
        Catalog.load([shapes_copy / "xgericht-1.0"], bundled=False)


def test_nachrichtentyp_code_from_a_code_list_may_differ_from_the_root(tmp_path: Path) -> None:
    # XWasser's header carries "0010" for its root administration.rueckweisung.0010.
    folder = tmp_path / "xsozial-1.0"
    shutil.copytree(XSOZIAL.parent, tmp_path, dirs_exist_ok=True)
    edit(folder / "manifest.toml", '"leistungsantrag.0100" = "leistungsantrag.0100"', "")
    edit(
        folder / "manifest.toml",
        "[message_types]",
        '[message_types]\n"leistungsantrag.0100" = "0100"',
    )
    catalog = Catalog.load([folder], bundled=False)
    standard = catalog.get("xsozial/1.0")
    root = sample_root(standard)
    typ = root.find("{http://www.xbroker.example/test/kopf/1.0}kopf/{*}typ")
    assert typ is not None
    assert "the code [message_types] gives the root element" in _header_error(catalog, root).detail
    typ.text = "0100"
    assert standard.header(root).nachrichtentyp == "0100"


# -- versions that keep one namespace ----------------------------------------------------


@pytest.fixture(scope="module")
def both_versions() -> Catalog:
    return Catalog.load([SHAPES], bundled=False)


def _with_version(standard_key: str, catalog: Catalog, version: str) -> etree._Element:
    root = sample_root(catalog.get(standard_key))
    kopf = root.find(f"{G}nachrichtenkopf")
    assert kopf is not None
    kopf.set("version", version)
    return root


def test_versions_sharing_a_namespace_are_told_apart_by_the_stated_version(
    both_versions: Catalog,
) -> None:
    for key in ("xgericht/1.0", "xgericht/1.1"):
        standard = both_versions.get(key)
        root = sample_root(standard)
        found, _ = both_versions.identify(root)
        assert found is standard
        found.validate(root)


def test_message_stating_a_version_not_in_service_is_unsupported_version(
    both_versions: Catalog,
) -> None:
    root = _with_version("xgericht/1.1", both_versions, "0.9")
    with pytest.raises(MessageError) as caught:
        both_versions.identify(root)
    assert caught.value.reason is Reason.UNSUPPORTED_VERSION
    assert "xgericht 0.9 is not in service; in service: 1.0, 1.1" in caught.value.detail


def test_message_stating_no_version_is_unsupported_version(both_versions: Catalog) -> None:
    root = sample_root(both_versions.get("xgericht/1.1"))
    kopf = root.find(f"{G}nachrichtenkopf")
    assert kopf is not None
    del kopf.attrib["version"]
    with pytest.raises(MessageError, match="no version stated") as caught:
        both_versions.identify(root)
    assert caught.value.reason is Reason.UNSUPPORTED_VERSION


def test_only_version_in_service_still_refuses_another_stated_version(
    xgericht_catalog: Catalog,
) -> None:
    root = _with_version("xgericht/1.0", xgericht_catalog, "1.1")
    with pytest.raises(MessageError) as caught:
        xgericht_catalog.identify(root)
    assert caught.value.reason is Reason.UNSUPPORTED_VERSION


def test_message_version_may_differ_from_the_release_version(shapes_copy: Path) -> None:
    # XJustiz 3.7.0 still fixes xjustizVersion="3.6.2" in its schemas.
    edit(
        shapes_copy / "xgericht-1.1" / "manifest.toml",
        'version_in_message = "g:nachrichtenkopf/@version"',
        'version_in_message = "g:nachrichtenkopf/@version"\nmessage_version = "1.0.1"',
    )
    catalog = Catalog.load([shapes_copy], bundled=False)
    root = _with_version("xgericht/1.1", catalog, "1.0.1")
    assert catalog.identify(root)[0].key == "xgericht/1.1"


def test_sharing_a_namespace_without_a_stated_version_is_a_load_error(
    shapes_copy: Path,
) -> None:
    edit(
        shapes_copy / "xgericht-1.1" / "manifest.toml",
        'version_in_message = "g:nachrichtenkopf/@version"\n',
        "",
    )
    with pytest.raises(StandardLoadError, match=r"need \[standard\] version_in_message"):
        Catalog.load([shapes_copy], bundled=False)


def test_two_versions_stating_the_same_message_version_is_a_load_error(
    shapes_copy: Path,
) -> None:
    edit(
        shapes_copy / "xgericht-1.1" / "manifest.toml",
        'version_in_message = "g:nachrichtenkopf/@version"',
        'version_in_message = "g:nachrichtenkopf/@version"\nmessage_version = "1.0"',
    )
    with pytest.raises(StandardLoadError, match=r"stating version '1\.0'"):
        Catalog.load([shapes_copy], bundled=False)


# -- the test flag of the XÖV basisnachricht ---------------------------------------------


def _xsozial_with_test_flag(
    tmp_path: Path, means: str, value: str
) -> tuple[Catalog, etree._Element]:
    shutil.copytree(XSOZIAL.parent, tmp_path, dirs_exist_ok=True)
    manifest = tmp_path / "xsozial-1.0" / "manifest.toml"
    edit(manifest, 'test = "kopf:kopf/kopf:testmeldung"', f'test = "@test"\ntest_means = "{means}"')
    catalog = Catalog.load([tmp_path / "xsozial-1.0"], bundled=False)
    root = sample_root(catalog.get("xsozial/1.0"))
    root.set("test", value)
    return catalog, root


@pytest.mark.parametrize("value", ["", "ja", "Testlauf 3"])
def test_test_flag_meaning_present_marks_a_test_message_whatever_it_holds(
    tmp_path: Path, value: str
) -> None:
    catalog, root = _xsozial_with_test_flag(tmp_path, "present", value)
    assert catalog.get("xsozial/1.0").header(root).test is True


def test_test_flag_meaning_present_is_false_when_absent(tmp_path: Path) -> None:
    catalog, root = _xsozial_with_test_flag(tmp_path, "present", "x")
    del root.attrib["test"]
    assert catalog.get("xsozial/1.0").header(root).test is False


def test_boolean_test_flag_still_refuses_other_text(tmp_path: Path) -> None:
    catalog, root = _xsozial_with_test_flag(tmp_path, "boolean", "ja")
    assert "is not a boolean" in _header_error(catalog, root).detail
