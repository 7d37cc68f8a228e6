"""A generated standard of the size of a published XÖV release loads offline and works."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.large_standard import (
    CODE_LIST_URL,
    STANDARD_KEY,
    message_type_code,
    write_large_standard,
)
from xta_schemas import Catalog
from xta_schemas.loader import BUILTIN_SCHEMAS, XOEV_BASE_URL
from xta_schemas.samples import sample_root

FILES = 75
ROOTS = 150
GROUPS = (FILES - 3) // 2


@pytest.fixture(scope="module")
def standards_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_large_standard(tmp_path_factory.mktemp("large"), files=FILES, roots=ROOTS)


@pytest.fixture
def catalog(standards_root: Path, no_network: None) -> Catalog:
    return Catalog.load([standards_root], bundled=False)


def test_generator_writes_the_requested_number_of_xsd_files(standards_root: Path) -> None:
    assert len(list(standards_root.rglob("*.xsd"))) == FILES


def test_schemas_reach_a_sibling_folder_and_an_url_mapped_by_the_catalog(
    standards_root: Path,
) -> None:
    types = (standards_root / "xjlarge-1.0/xsd/typen/typen-00.xsd").read_text(encoding="utf-8")
    assert 'schemaLocation="../../../xjlarge-basis/basis.xsd"' in types
    assert f'schemaLocation="{CODE_LIST_URL}"' in types
    assert CODE_LIST_URL in (standards_root / "xjlarge-1.0/catalog.xml").read_text("utf-8")


def test_loads_offline_with_every_generated_schema_and_the_builtin_xoev_base(
    catalog: Catalog, standards_root: Path
) -> None:
    files = set(catalog.get(STANDARD_KEY).schema_files)
    assert {path.resolve() for path in standards_root.rglob("*.xsd")} <= files
    assert BUILTIN_SCHEMAS[XOEV_BASE_URL].resolve() in files
    assert len(files) == FILES + 1


def test_declares_one_message_type_per_root(catalog: Catalog) -> None:
    message_types = catalog.get(STANDARD_KEY).manifest.message_types
    assert len(message_types) == ROOTS
    assert message_type_code(ROOTS - 1, GROUPS) in message_types


def test_sample_is_identified_and_valid(catalog: Catalog) -> None:
    standard = catalog.get(STANDARD_KEY)
    root = sample_root(standard)
    found, message_type = catalog.identify(root)
    assert found is standard
    assert message_type.code == message_type_code(0, GROUPS)
    standard.validate(root)


def test_sample_header_and_routing_facts_are_read(catalog: Catalog) -> None:
    standard = catalog.get(STANDARD_KEY)
    root = sample_root(standard)
    assert standard.header(root).author.kennung == "osi:hh-portal"
    assert standard.routing_facts(root) == {"ags": "02000000"}


def test_an_odd_file_count_is_met_exactly(tmp_path: Path, no_network: None) -> None:
    root = write_large_standard(tmp_path, files=8, roots=5)
    assert len(list(root.rglob("*.xsd"))) == 8
    assert len(Catalog.load([root], bundled=False).get(STANDARD_KEY).manifest.message_types) == 5
