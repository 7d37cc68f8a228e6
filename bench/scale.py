"""Costs as the world grows: directories of 10 to 20,000 agencies, catalogs of 1 to 30
standards. No RabbitMQ; everything runs in this process.

A country's directory, generated: municipalities with a registration office each
(accepts ``meldung.anmeldung.0200`` for its own 8-digit AGS), one building authority per
district of ten municipalities (accepts ``bau.antrag.0200`` for the district's 5-digit
key), two agencies notified of every registration (statistics, electoral roll: the
fan-out), and the portal that authors messages. Every agency has a certificate file of
its own (copies of eight certificates, so loading reads and parses one file per agency
as a real directory does). A message names no reader and carries the AGS of a municipality,
so routing has to find the responsible agency by region, then the notified ones.

Figures per size: ``load_s`` (``Directory.load`` of the file, every certificate file read:
what the start does), ``reload_s`` (the worker's ``DirectoryWatcher.reload`` after the
start's load, the certificate files unchanged), each also as CPU time (``_cpu_s``),
``retained_mb`` (what the loaded directory keeps, by tracemalloc), ``route_us`` (one
``route`` call, the mean over messages to every municipality in turn) and its ratio to
the smallest directory's.

Catalogs: the generated XÖV release of ``bench.large_standard`` (75 XSD files), copied
under 30 names and namespaces; ``validate_us`` is what the pipeline does per message with
the catalog (identify the standard by the root, then validate), with 1, 10 and 30 such
standards loaded.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree

from bench.large_standard import STANDARD_KEY, write_large_standard
from broker.worker.reload import DirectoryWatcher
from routing import CertificateFiles, Directory, RoutingInput, route
from signing.devpki import issue, setup_ca
from xta_schemas import Catalog
from xta_schemas.samples import sample_root

__all__ = ["AGENCY_COUNTS", "STANDARD_COUNTS", "directory_toml", "run"]

AGENCY_COUNTS = (10, 1_000, 20_000)
STANDARD_COUNTS = (1, 10, 30)
_CERTIFICATES = 8
_PORTAL = "psw:portal-1"
_NOTIFIED = ("stat:landesamt", "wahl:landeswahlleiter")
_MELDUNG = "meldung.anmeldung.0200"
_BAU = "bau.antrag.0200"


def _ags(municipality: int) -> str:
    """An 8-digit AGS: state 2, district 3, municipality 3 digits; ten per district."""
    district = municipality // 10
    return f"{1 + district // 1000:02d}{district % 1000:03d}{municipality % 10:03d}"


def directory_toml(agencies: int) -> str:
    """A directory of ``agencies`` entries (at least 10) as the module describes it."""
    fixed = 1 + len(_NOTIFIED)
    municipalities = max(1, (agencies - fixed) * 10 // 11)
    districts = max(1, agencies - fixed - municipalities)
    cert = 0

    def entry(kennung: str, name: str, extra: str) -> str:
        nonlocal cert
        cert += 1
        return (
            f'[[agency]]\nkennung = "{kennung}"\nname = "{name}"\n'
            f'certificates = ["certs/{cert}.crt"]\n{extra}\n'
        )

    out = [entry(_PORTAL, "Portal", f'may_send = ["{_MELDUNG}", "{_BAU}"]\n')]
    for kennung in _NOTIFIED:
        out.append(entry(kennung, f"Notified {kennung}", f'notify = ["{_MELDUNG}"]\n'))
    for m in range(municipalities):
        ags = _ags(m)
        out.append(
            entry(
                f"meld:{ags}",
                f"Meldebehörde {ags}",
                f'accepts = ["{_MELDUNG}"]\nregions = ["{ags}"]\n',
            )
        )
    for d in range(districts):
        key = _ags(d * 10)[:5]
        out.append(
            entry(
                f"bau:{key}", f"Bauaufsicht {key}", f'accepts = ["{_BAU}"]\nregions = ["{key}"]\n'
            )
        )
    return "".join(out)


def _seconds(action: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``action``, each the least of ``repeat`` runs (the others
    had more interference; on a busy machine the CPU time is the steadier figure)."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        action()
        wall = min(wall, time.perf_counter() - started)
        cpu = min(cpu, time.process_time() - started_cpu)
    return wall, cpu


def _retained_mb(action: Callable[[], object]) -> float:
    """What the result of ``action`` keeps allocated, in MB (tracemalloc, so slow)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = action()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / (1024 * 1024)


def _route_us(directory: Directory, municipalities: int, budget: float) -> float:
    inputs = [
        RoutingInput(_PORTAL, _MELDUNG, "1.1", facts={"ags": _ags(m)})
        for m in range(min(municipalities, 500))
    ]
    expected = 1 + len(_NOTIFIED)
    got = route(inputs[0], directory)
    if len(got) != expected:
        raise AssertionError(f"routing found {len(got)} recipients, not {expected}")
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < budget:
        for one in inputs:
            route(one, directory)
        count += len(inputs)
    return (time.perf_counter() - started) / count * 1e6


def _directory_figures(folder: Path, agencies: int, quick: bool) -> dict[str, Any]:
    path = folder / f"directory-{agencies}.toml"
    path.write_text(directory_toml(agencies), encoding="utf-8")
    (folder / "certs").mkdir(exist_ok=True)
    for index in range(1, agencies + 1):
        target = folder / "certs" / f"{index}.crt"
        if not target.exists():
            shutil.copyfile(folder / f"cert-{index % _CERTIFICATES}.crt", target)
    repeat = 1 if quick and agencies > 1000 else 3
    load_s, load_cpu_s = _seconds(lambda: Directory.load(path, folder), repeat)
    applied: list[Directory] = []

    async def apply(directory: Directory) -> None:
        applied.append(directory)

    # As `xbroker run` does: the watcher keeps the certificate files the start read.
    started = CertificateFiles()
    Directory.load(path, folder, certificates=started)
    watcher = DirectoryWatcher(path, folder, apply, certificates=started)
    reload_s, reload_cpu_s = _seconds(lambda: asyncio.run(watcher.reload()), repeat)
    directory = applied[-1]
    municipalities = sum(1 for a in directory if a.kennung.startswith("meld:"))
    return {
        "agencies": len(directory),
        "load_s": load_s,
        "load_cpu_s": load_cpu_s,
        "reload_s": reload_s,
        "reload_cpu_s": reload_cpu_s,
        "retained_mb": _retained_mb(lambda: Directory.load(path, folder)),
        "route_us": _route_us(directory, municipalities, 0.2 if quick else 1.0),
    }


def _standard_copies(folder: Path, count: int) -> list[Path]:
    """``count`` copies of the generated release, each under a name and namespace of its
    own (every ``xjlarge`` in names and contents renamed)."""
    template = write_large_standard(folder / "template")
    copies = []
    for index in range(count):
        name = f"xjcopy{index:02d}"
        target = folder / name
        for source in template.rglob("*"):
            relative = Path(str(source.relative_to(template)).replace("xjlarge", name))
            if source.is_dir():
                (target / relative).mkdir(parents=True, exist_ok=True)
            else:
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                text = source.read_text(encoding="utf-8").replace("xjlarge", name)
                (target / relative).write_text(text, encoding="utf-8")
        copies.append(target)
    shutil.rmtree(template)
    return copies


def _validate_us(catalog: Catalog, root: etree._Element, budget: float) -> float:
    standard, _ = catalog.identify(root)
    standard.validate(root)  # warm up, and prove the sample is valid
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < budget:
        for _ in range(50):
            found, _ = catalog.identify(root)
            found.validate(root)
        count += 50
    return (time.perf_counter() - started) / count * 1e6


def _catalog_figures(folder: Path, quick: bool, counts: tuple[int, ...]) -> dict[str, Any]:
    copies = _standard_copies(folder, max(counts))
    out: dict[str, Any] = {}
    for count in counts:
        started = time.perf_counter()
        catalog = Catalog.load(copies[:count], bundled=False)
        load_s = time.perf_counter() - started
        # The message of the last standard loaded, so no lookup is favoured by order.
        key = STANDARD_KEY.replace("xjlarge", f"xjcopy{count - 1:02d}")
        root = sample_root(catalog.get(key))
        out[str(count)] = {
            "standards": len(catalog.standards),
            "load_s": load_s,
            "validate_us": _validate_us(catalog, root, 0.2 if quick else 1.0),
        }
    return out


def run(
    quick: bool,
    agencies: tuple[int, ...] = AGENCY_COUNTS,
    standards: tuple[int, ...] = STANDARD_COUNTS,
) -> dict[str, Any]:
    """Every figure of the module, keyed ``directories`` (by agency count) and
    ``catalogs`` (by standard count); each with its ratio to the smallest."""
    with tempfile.TemporaryDirectory(prefix="xbroker-scale-") as name:
        folder = Path(name)
        setup_ca(folder / "pki")
        for index in range(_CERTIFICATES):
            crt, _ = issue(folder / "pki" / "ca", f"cert:c{index}", "Scale", folder, "ec")
            crt.rename(folder / f"cert-{index}.crt")
        directories = {str(n): _directory_figures(folder, n, quick) for n in agencies}
        catalogs = _catalog_figures(folder / "standards", quick, standards)
    smallest = directories[str(agencies[0])]["route_us"]
    for figures in directories.values():
        figures["route_ratio"] = figures["route_us"] / smallest
    first = catalogs[str(standards[0])]["validate_us"]
    for figures in catalogs.values():
        figures["validate_ratio"] = figures["validate_us"] / first
    return {"directories": directories, "catalogs": catalogs}


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2))
