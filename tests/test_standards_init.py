"""``xbroker schemas init``: a first manifest for a release, drafted from its XSDs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from lxml import etree

from bench.large_standard import message_type_code, write_large_standard
from tests.standards_support import run_schemas
from xta_schemas import Catalog
from xta_schemas.manifest import MANIFEST_NAME, read_manifest
from xta_schemas.scaffold import default_identity, render, survey, unfilled

BUNDLED = Path(__file__).parent.parent / "xta_schemas" / "bundled"
XGERICHT = Path(__file__).parent / "fixtures" / "standards" / "shapes" / "xgericht-1.0"
XSD = "http://www.w3.org/2001/XMLSchema"


def _without_manifest(source: Path, target: Path) -> Path:
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(MANIFEST_NAME))
    return target


def test_the_draft_of_a_release_sized_standard_lists_all_it_declares(
    tmp_path: Path, no_network: None
) -> None:
    root = write_large_standard(tmp_path, files=75, roots=150)
    folder = root / "xjlarge-1.0"
    original = read_manifest(folder)
    (folder / MANIFEST_NAME).unlink()

    draft = survey(folder)

    assert draft.namespace == original.standard.namespace
    assert set(draft.roots) == set(original.message_types)
    assert len(draft.roots) == 150
    assert draft.catalog == "catalog.xml"
    assert list(draft.url_map.values()) == ["codelisten/verfahrensart.xsd"]
    assert draft.g2g_header  # declared in the base schema, a sibling folder


def test_a_drafted_manifest_loads_and_serves_a_message(tmp_path: Path, no_network: None) -> None:
    root = write_large_standard(tmp_path, files=20, roots=12)
    folder = root / "xjlarge-1.0"
    (folder / MANIFEST_NAME).unlink()
    name, version = default_identity(folder)
    (folder / MANIFEST_NAME).write_text(render(survey(folder), name, version), encoding="utf-8")
    groups = (20 - 3) // 2  # how the generator spreads 12 roots over its files

    standard = Catalog.load([root], bundled=False).get("xjlarge/1.0")
    message = etree.parse(str(folder / "samples" / "nachricht-0000.xml")).getroot()

    assert set(standard.message_types) == {message_type_code(i, groups) for i in range(12)}
    standard.validate(message)
    assert standard.header(message).nachrichtentyp == message_type_code(0, groups)


@pytest.mark.parametrize("name", ["xmeld-1.0", "xmeld-1.1", "xgewerbe-1.0", "xbau-1.0"])
def test_the_draft_of_a_bundled_standard_agrees_with_its_manifest(name: str) -> None:
    manifest = read_manifest(BUNDLED / name)

    draft = survey(BUNDLED / name)

    assert draft.namespace == manifest.standard.namespace
    assert set(draft.entries) == set(manifest.standard.schemas)
    assert set(draft.roots) == set(manifest.message_types)
    assert draft.g2g_header
    assert default_identity(BUNDLED / name) == (
        manifest.standard.name,
        manifest.standard.version,
    )


def test_a_release_without_the_g2g_header_is_told_to_write_its_header_rules() -> None:
    draft = survey(XGERICHT)

    assert not draft.g2g_header
    assert draft.entries == ("xsd/xgericht_0005_nachrichten.xsd", "xsd/xgericht_0200_antrag.xsd")
    text = render(draft, "xgericht", "1.0")
    assert "write the [header] XPaths" in text
    assert [line.split(" =")[0] for _, line in unfilled(text)] == [
        "uuid",
        "created",
        "author",
        "readers",
    ]


def test_an_url_import_without_a_local_file_is_named_in_the_draft(tmp_path: Path) -> None:
    url = "https://example.org/schemata/missing-1.0.xsd"
    (tmp_path / "release.xsd").write_text(
        f'<xs:schema xmlns:xs="{XSD}" targetNamespace="urn:release">'
        f'<xs:import namespace="urn:elsewhere" schemaLocation="{url}"/>'
        '<xs:element name="nachricht.eins.0001" type="xs:string"/></xs:schema>',
        encoding="utf-8",
    )

    draft = survey(tmp_path)

    assert draft.unresolved_urls == (url,)
    assert f'# "{url}"' in render(draft, "release", "1")


def test_schemas_init_writes_a_manifest_that_schemas_load_accepts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = write_large_standard(tmp_path, files=20, roots=12) / "xjlarge-1.0"
    (folder / MANIFEST_NAME).unlink()

    assert run_schemas("schemas", "init", str(folder), "--write") == 0
    assert (folder / MANIFEST_NAME).is_file()
    assert run_schemas("schemas", "init", str(folder), "--write") == 2  # no overwrite by accident
    assert run_schemas("schemas", "load", str(folder)) == 0
    assert "loaded xjlarge/1.0" in capsys.readouterr().out


def test_a_draft_that_needs_header_xpaths_does_not_load_until_they_are_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _without_manifest(XGERICHT, tmp_path / "xgericht-1.0")

    assert run_schemas("schemas", "init", str(folder), "--write") == 1
    told = capsys.readouterr().err
    assert f"{folder / MANIFEST_NAME}:" in told and "fill in: uuid = " in told
    assert run_schemas("schemas", "load", str(folder)) == 2
    assert "still to be filled in: uuid = " in capsys.readouterr().err
    assert (
        run_schemas("schemas", "init", str(folder), "--write", "--force", "--allow-incomplete") == 0
    )


def test_schemas_init_without_xsd_files_fails_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_schemas("schemas", "init", str(tmp_path)) == 2
    assert "no .xsd files" in capsys.readouterr().err
