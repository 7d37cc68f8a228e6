"""Micro benchmark: schema validations per second for each bundled standard.

Validates the first sample of each standard over and over with the compiled lxml schema
(the hot path of the broker); the detailed xmlschema report is not involved because the
samples are valid.
"""

from __future__ import annotations

import time

from xta_schemas import Catalog
from xta_schemas.samples import sample_root

__all__ = ["run"]


def run(quick: bool) -> dict[str, float]:
    """Validations per second keyed ``validate/<name>/<version>``, printed as they come,
    and the time to load the catalog (``catalog_load_seconds``)."""
    budget = 0.2 if quick else 1.0
    started = time.perf_counter()
    catalog = Catalog.load()
    load_seconds = time.perf_counter() - started
    print(f"catalog load (every bundled standard compiled) {load_seconds * 1000:>8.1f} ms")
    results: dict[str, float] = {"catalog_load_seconds": load_seconds}
    for standard in catalog.standards:
        root = sample_root(standard)
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
        rate = count / (now - started)
        results[f"validate/{standard.key}"] = rate
        print(f"validate {standard.key:<14} {rate:>10.0f} messages/s")
    return results


if __name__ == "__main__":
    run(quick=True)
