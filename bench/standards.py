"""Micro benchmark: schema validations per second for each bundled standard.

Validates the first sample of each standard over and over with the compiled lxml schema
(the hot path of the broker); the detailed xmlschema report is not involved because the
samples are valid. A generated standard of the size of a published XÖV release
(bench/large_standard.py) shows how long loading such a release takes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from lxml import etree

from xta_schemas import Catalog
from xta_schemas.samples import sample_root
from xta_schemas.standard import Standard

from .large_standard import STANDARD_KEY, write_large_standard

__all__ = ["run"]


def run(quick: bool) -> dict[str, float]:
    """Validations per second keyed ``validate/<name>/<version>``, printed as they come,
    the time to load the catalog (``catalog_load_seconds``) and to load a generated
    standard of 75 XSD files and 150 roots (``large_standard_load_seconds``)."""
    budget = 0.2 if quick else 1.0
    started = time.perf_counter()
    catalog = Catalog.load()
    load_seconds = time.perf_counter() - started
    print(f"catalog load (every bundled standard compiled) {load_seconds * 1000:>8.1f} ms")
    results: dict[str, float] = {"catalog_load_seconds": load_seconds}
    for standard in catalog.standards:
        results[f"validate/{standard.key}"] = _report_rate(standard, budget)
    results.update(_large_standard(budget))
    return results


def _large_standard(budget: float) -> dict[str, float]:
    """Load the generated large standard alone (no bundled ones), then validate its sample."""
    with tempfile.TemporaryDirectory(prefix="xjlarge-") as folder:
        root_folder = write_large_standard(Path(folder))
        started = time.perf_counter()
        catalog = Catalog.load([root_folder], bundled=False)
        load_seconds = time.perf_counter() - started
        standard = catalog.get(STANDARD_KEY)
        print(
            f"large standard load ({len(standard.schema_files)} XSD files, "
            f"{len(standard.manifest.message_types)} roots) {load_seconds * 1000:>8.1f} ms"
        )
        rate = _report_rate(standard, budget)
    return {"large_standard_load_seconds": load_seconds, f"validate/{STANDARD_KEY}": rate}


def _report_rate(standard: Standard, budget: float) -> float:
    rate = _validation_rate(standard, sample_root(standard), budget)
    print(f"validate {standard.key:<14} {rate:>10.0f} messages/s")
    return rate


def _validation_rate(standard: Standard, root: etree._Element, budget: float) -> float:
    """Validations of ``root`` per second over ``budget`` seconds."""
    standard.validate(root)  # warm up, and prove the sample is valid
    count = 0
    started = time.perf_counter()
    deadline = started + budget
    while True:
        for _ in range(50):
            standard.validate(root)
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            break
    return count / (now - started)


if __name__ == "__main__":
    run(quick=True)
