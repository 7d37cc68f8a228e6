"""The bundled standards: samples, headers, routing facts, versions side by side."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from xta_schemas import Catalog, Header, MessageType, Party
from xta_schemas.catalog import BUNDLED_DIR
from xta_schemas.samples import read_sample, sample_root, with_fresh_header

EXAMPLES = Path(__file__).parent.parent / "examples" / "submissions"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def _bundled_samples() -> list[Path]:
    return sorted(BUNDLED_DIR.glob("*/samples/*.xml"))


def test_bundled_catalog_serves_xmeld_both_versions_xgewerbe_and_xbau(catalog: Catalog) -> None:
    keys = {standard.key for standard in catalog.standards}
    assert keys == {"xmeld/1.0", "xmeld/1.1", "xgewerbe/1.0", "xbau/1.0"}


def test_every_standard_ships_a_sample_of_each_message_type(catalog: Catalog) -> None:
    for standard in catalog.standards:
        shipped = {standard.message_type_of(read_sample(path)) for path in standard.samples}
        assert shipped == set(standard.message_types.values()), standard.key


@pytest.mark.parametrize(
    "path", _bundled_samples(), ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_bundled_sample_is_identified_has_a_header_and_validates(
    catalog: Catalog, path: Path
) -> None:
    root = read_sample(path)
    standard, message_type = catalog.identify(root)
    assert standard.folder == path.parent.parent
    assert standard.header(root).nachrichtentyp == message_type.code
    standard.validate(root)


@pytest.mark.parametrize(
    ("name", "key", "reader", "ags"),
    [
        ("anmeldung-hamburg.xml", "xmeld/1.1", "psw:02000000", "02000000"),
        ("anmeldung-norderstedt.xml", "xmeld/1.0", None, "01060063"),
        ("gewerbe-anmeldung.xml", "xgewerbe/1.0", "gew:02000000", "02000000"),
    ],
)
def test_demo_submission_is_valid_and_carries_its_routing_facts(
    catalog: Catalog, name: str, key: str, reader: str | None, ags: str
) -> None:
    root = read_sample(EXAMPLES / name)
    standard, _ = catalog.identify(root)
    standard.validate(root)
    header = standard.header(root)
    assert standard.key == key
    assert header.author == Party("osi:hh-portal", "Hamburg Service-Portal", "DVDV")
    assert [party.kennung for party in header.readers] == ([reader] if reader else [])
    assert standard.routing_facts(root) == {"ags": ags}


def test_demo_submissions_have_distinct_uuids(catalog: Catalog) -> None:
    uuids = []
    for path in sorted(EXAMPLES.glob("*.xml")):
        root = read_sample(path)
        uuids.append(catalog.identify(root)[0].header(root).uuid)
    assert len(set(uuids)) == len(uuids) == 4


def test_header_reads_every_field_of_the_g2g_header(catalog: Catalog) -> None:
    root = read_sample(EXAMPLES / "anmeldung-hamburg.xml")
    header = catalog.get("xmeld/1.1").header(root)
    assert header == Header(
        uuid=header.uuid,
        nachrichtentyp="meldung.anmeldung.0200",
        list_uri="urn:xoev-de:xmeld:codeliste:nachrichtentyp",
        list_version="1.1",
        created=datetime.fromisoformat("2026-11-28T10:15:00+01:00"),
        author=Party("osi:hh-portal", "Hamburg Service-Portal", "DVDV"),
        readers=(Party("psw:02000000", "Meldebehörde Hamburg", "DVDV"),),
        test=False,
    )


def test_test_attribute_sets_the_test_flag(catalog: Catalog) -> None:
    standard = catalog.get("xmeld/1.0")
    root = sample_root(standard, "meldung.anmeldung.0200")
    root.set("test", "true")
    assert standard.header(root).test is True
    standard.validate(root)


def test_xmeld_versions_are_served_side_by_side(catalog: Catalog) -> None:
    older = sample_root(catalog.get("xmeld/1.0"), "meldung.anmeldung.0200")
    newer = sample_root(catalog.get("xmeld/1.1"), "meldung.anmeldung.0200")
    found = [catalog.identify(root) for root in (older, newer)]
    assert [(s.key, t) for s, t in found] == [
        ("xmeld/1.0", MessageType("meldung.anmeldung.0200", "meldung.anmeldung.0200")),
        ("xmeld/1.1", MessageType("meldung.anmeldung.0200", "meldung.anmeldung.0200")),
    ]
    for (standard, _), root in zip(found, (older, newer), strict=True):
        standard.validate(root)


def test_xmeld_1_1_adds_wohnungsgeberbestaetigung_and_kontakt(catalog: Catalog) -> None:
    root = sample_root(catalog.get("xmeld/1.1"), "meldung.anmeldung.0200")
    anmeldung = root.find("anmeldung")
    assert anmeldung is not None
    assert anmeldung.find("wohnungsgeberbestaetigung") is not None
    assert anmeldung.find("kontakt") is not None


def test_reply_message_has_no_ags_routing_fact(catalog: Catalog) -> None:
    standard = catalog.get("xmeld/1.1")
    root = sample_root(standard, "meldung.anmeldung.bestaetigung.0201")
    assert standard.routing_facts(root) == {}


@pytest.mark.parametrize(
    ("key", "code", "ags"),
    [
        ("xgewerbe/1.0", "gewerbe.anmeldung.0100", "02000000"),
        ("xbau/1.0", "bau.antrag.0200", "02000000"),
    ],
)
def test_routing_fact_ags_comes_from_the_responsible_address(
    catalog: Catalog, key: str, code: str, ags: str
) -> None:
    standard = catalog.get(key)
    assert standard.routing_facts(sample_root(standard, code)) == {"ags": ags}


def test_fresh_header_gives_a_new_uuid_and_time_and_stays_valid(catalog: Catalog) -> None:
    standard = catalog.get("xmeld/1.1")
    original = sample_root(standard, "meldung.anmeldung.0200")
    now = datetime(2026, 12, 24, 8, 0, tzinfo=UTC)
    fresh = with_fresh_header(original, standard, now=now)
    standard.validate(fresh)
    assert standard.header(fresh).uuid != standard.header(original).uuid
    assert standard.header(fresh).created == now


def test_fresh_header_leaves_the_original_unchanged(catalog: Catalog) -> None:
    standard = catalog.get("xgewerbe/1.0")
    original = sample_root(standard)
    before = etree.tostring(original)
    with_fresh_header(original, standard)
    assert etree.tostring(original) == before


def test_fresh_headers_are_distinct(catalog: Catalog) -> None:
    standard = catalog.get("xbau/1.0")
    root = sample_root(standard)
    uuids = {standard.header(with_fresh_header(root, standard)).uuid for _ in range(50)}
    assert len(uuids) == 50


def test_standards_share_nothing_between_catalogs() -> None:
    first, second = Catalog.load(), Catalog.load()
    assert first.get("xmeld/1.1") is not second.get("xmeld/1.1")
