"""Published XÖV releases, unmodified: they load, and xbroker agrees with lxml on them.

XWasser 1.0.0 and xdomea 3.0.0 with the manifests of examples/standards/, their real
messages checked by `xbroker schemas check` and by plain lxml, each on its own; XBau 2.6's
URL-importing variant loaded offline through [url_map] onto its self-contained variant;
`xbroker schemas init` drafting XWasser's own namespace among the schemas it imports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.commands.schemas import check_message
from tests.releases_support import lxml_verdict, releases_root, serve_release
from xta_schemas import Catalog
from xta_schemas.scaffold import survey

XWASSER_NS = "https://gitlab.opencode.de/akdb/xoev/xwasser/-/raw/main/V1_0_0"


@pytest.fixture(scope="module")
def releases() -> Path:
    return releases_root()


@pytest.fixture
def xwasser(tmp_path: Path, releases: Path) -> Path:
    return serve_release(
        tmp_path, "xwasser-1.0.0", releases / "xwasser-1.0.0", ("V1_0_0", "external")
    )


@pytest.fixture
def xdomea(tmp_path: Path, releases: Path) -> Path:
    return serve_release(tmp_path, "xdomea-3.0.0", releases / "xdomea-3.0.0", ("3.0.0", "xoev"))


def _verdicts(folder: Path, instances: Path) -> dict[str, tuple[bool, bool]]:
    """Per instance: (lxml's verdict, xbroker's verdict)."""
    catalog = Catalog.load([folder], bundled=False)
    return {
        path.name: (
            lxml_verdict(folder, path),
            check_message(catalog, path.read_bytes(), path.name).valid,
        )
        for path in sorted(instances.glob("*.xml"))
    }


def test_xwasser_verdicts_equal_lxmls_on_every_instance(
    xwasser: Path, releases: Path, no_network: None
) -> None:
    verdicts = _verdicts(xwasser, releases / "xwasser-1.0.0" / "instances")

    assert {name: ours for name, (_, ours) in verdicts.items()} == {
        name: lxmls for name, (lxmls, _) in verdicts.items()
    }
    assert len(verdicts) == 15
    assert sum(lxmls for lxmls, _ in verdicts.values()) == 13


def test_xdomea_verdicts_equal_lxmls_on_every_instance(
    xdomea: Path, releases: Path, no_network: None
) -> None:
    verdicts = _verdicts(xdomea, releases / "xdomea-3.0.0" / "instances")

    assert {name: ours for name, (_, ours) in verdicts.items()} == {
        name: lxmls for name, (lxmls, _) in verdicts.items()
    }
    assert len(verdicts) == 4
    assert all(lxmls for lxmls, _ in verdicts.values())


def test_an_invalid_xwasser_instance_is_reported_by_line_and_path(
    xwasser: Path, releases: Path
) -> None:
    catalog = Catalog.load([xwasser], bundled=False)
    path = releases / "xwasser-1.0.0" / "instances" / "monitoring_plan_minimal.xml"

    result = check_message(catalog, path.read_bytes(), path.name)

    assert not result.valid and result.code == "schema-invalid"
    first = result.issues[0]
    assert isinstance(first["line"], int)
    assert first["path"].startswith("/xwas:vorgang.transportieren.2010/xwas:vorgang/")
    assert "<class" not in " ".join(issue["reason"] for issue in result.issues)


def test_a_creation_time_without_zone_is_read_in_the_default_zone_and_said(
    xwasser: Path, releases: Path
) -> None:
    catalog = Catalog.load([xwasser], bundled=False)
    path = releases / "xwasser-1.0.0" / "instances" / "quality_report_minimal.xml"
    from signing import parse_untrusted

    root = parse_untrusted(path.read_bytes())
    standard, _ = catalog.identify(root)

    header = standard.header(root)

    assert header.created.isoformat() == "2024-05-28T09:00:00+02:00"
    assert header.assumed_zone == "Europe/Berlin"
    assert "creation time without time zone, read in Europe/Berlin" in header.notes()


def test_schemas_init_drafts_xwasser_in_its_own_namespace(releases: Path) -> None:
    draft = survey(releases / "xwasser-1.0.0")

    assert draft.namespace == XWASSER_NS
    assert len(draft.roots) == 12
    assert draft.g2g_header


def test_xbau_url_importing_variant_loads_onto_the_self_contained_files(
    tmp_path: Path, releases: Path, no_network: None
) -> None:
    folder = serve_release(tmp_path, "xbau-2.6", releases / "xbau-2.6", ("xsd", "xsd_dev"))

    standard = Catalog.load([folder], bundled=False).get("xbau/2.6")

    assert standard.namespace == "http://www.xleitstelle.de/xbau/2/6"
    assert len(standard.message_types) > 40
    imported = {path.name for path in standard.schema_files if path.parent.name == "xsd_dev"}
    assert "xoev-code.xsd" in imported
    assert not any(
        path.parent.name == "xsd_dev" and path.name.startswith("xbau-nachrichten")
        for path in standard.schema_files
    )
