"""Releases that name parties by a code (XJustiz: a court code) route like any other.

The fixture ``shapes/xgericht-1.0`` names courts by codes like ``G2001``; with
``kennung_prefix = "ger"`` in its manifest the header's parties are the Behördenkennungen
``ger:G2001`` that the directory, the certificates and the queues use.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from broker.pipeline import Accepted, Pipeline
from routing import Directory
from signing import Signer, TrustStore, Verifier
from signing.devpki import init_dev_pki
from signing.keyfiles import party_paths
from tests.standards_support import edit
from xta_schemas import Catalog, StandardLoadError
from xta_schemas.samples import sample_root

FIXTURE = Path(__file__).parent / "fixtures" / "standards" / "shapes" / "xgericht-1.0"
KLAGE = "nachricht.antrag.klage.0200001"


def _with_party_setting(tmp_path: Path, line: str) -> Path:
    folder = tmp_path / "xgericht-1.0"
    shutil.copytree(FIXTURE, folder)
    edit(folder / "manifest.toml", "[header.party]\n", f"[header.party]\n{line}\n")
    return folder


def test_a_kennung_prefix_makes_court_codes_behoerdenkennungen(tmp_path: Path) -> None:
    catalog = Catalog.load([_with_party_setting(tmp_path, 'kennung_prefix = "ger"')])
    standard = catalog.get("xgericht/1.0")

    header = standard.header(sample_root(standard, KLAGE))

    assert header.author.kennung == "ger:G2001"
    assert [reader.kennung for reader in header.readers] == ["ger:G2002"]


def test_without_a_prefix_the_code_is_the_kennung(tmp_path: Path) -> None:
    standard = Catalog.load([FIXTURE]).get("xgericht/1.0")

    assert standard.header(sample_root(standard, KLAGE)).author.kennung == "G2001"


@pytest.mark.parametrize("prefix", ["Ger", "g", "ger:", "gericht-nrw", "abcdefghijk"])
def test_a_prefix_that_no_directory_entry_can_have_fails_the_load(
    tmp_path: Path, prefix: str
) -> None:
    folder = _with_party_setting(tmp_path, f'kennung_prefix = "{prefix}"')

    with pytest.raises(StandardLoadError, match="kennung prefix"):
        Catalog.load([folder])


def test_a_court_coded_message_is_verified_validated_and_routed(tmp_path: Path) -> None:
    catalog = Catalog.load([_with_party_setting(tmp_path, 'kennung_prefix = "ger"')])
    standard = catalog.get("xgericht/1.0")
    pki = tmp_path / "pki"
    init_dev_pki(pki, [("ger:G2001", "Amtsgericht Musterstadt"), ("ger:G2002", "Landgericht")])
    cert, key = party_paths(pki, "ger:G2001")
    directory_file = tmp_path / "directory.toml"
    directory_file.write_text(
        f"""
[[agency]]
kennung = "ger:G2001"
name = "Amtsgericht Musterstadt"
certificates = ["{cert}"]
may_send = ["{KLAGE}"]

[[agency]]
kennung = "ger:G2002"
name = "Landgericht Musterstadt"
accepts = ["{KLAGE}"]
""",
        encoding="utf-8",
    )
    pipeline = Pipeline(
        catalog,
        Verifier(TrustStore.from_dirs(pki / "trust", pki / "crl")),
        Directory.load(directory_file),
    )
    body = Signer.from_files(key, cert).sign(sample_root(standard, KLAGE))

    decision = pipeline.process(body, at=datetime.now(UTC))

    assert isinstance(decision, Accepted), decision
    assert decision.standard == "xgericht/1.0"
    assert decision.header.author.kennung == "ger:G2001"
    assert [r.kennung for r in decision.recipients] == ["ger:G2002"]
