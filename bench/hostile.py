"""What each class of hostile input costs the pipeline, next to a valid message of its size.

    python -m bench.hostile [--quick] [--json PATH]

Every class of ``tests/attacks/generators.py`` is measured at the size its attack was
first measured at (docs/security.md), and so are inputs just inside the limits, which
the parser lets through and the verifier has to work on. Each input is decided by
``Pipeline.process`` in a process of its own that first loads the world (catalog,
directory, trust store, detailed reports prepared as ``xbroker run`` prepares them) and
reads the input; so its peak RSS, the kernel's high-water mark, is that of one worker
deciding that one message. The valid message of the same size, an xbau Bauantrag grown
to it and signed, is measured the same way. Times are CPU seconds of the deciding
process, which the other work on a shared machine disturbs less than wall time does;
``ratio`` is hostile / valid. A valid 100 KB message is the first row, as the yardstick.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Final

from bench.messages import MessageClass, content, grow_to
from bench.parties import AUTHORS
from bench.world import offline_parts
from broker.app import load_parts
from broker.pipeline import Accepted, Pipeline
from broker.settings import load_settings
from signing import ParserLimits, Signer, parse_untrusted
from signing.keyfiles import party_paths
from tests.attacks import generators as g

__all__ = ["CASES", "Case", "Figure", "measure", "render"]

_MB: Final = 1024 * 1024
SMALL: Final = MessageClass("2kb", "ec")
LARGE: Final = MessageClass("100kb", "ec")


@dataclass(frozen=True)
class Case:
    """One hostile input, made from a signed 2 KB message (``None``: see ``_special``)."""

    name: str
    make: Callable[[bytes], bytes] | None
    quick: bool = True  # measured in a quick run too


_LIMITS: Final = ParserLimits()


def _room(signed: bytes) -> tuple[int, int]:
    """How many more elements, and namespaces in scope at the root, the limits allow."""
    root = parse_untrusted(signed)
    deepest = max(len(element.nsmap) for element in root.iter())
    elements = _LIMITS.max_elements - sum(1 for _ in root.iter())
    return elements, _LIMITS.max_namespaces_in_scope - deepest


def _at_element_limit(signed: bytes) -> bytes:
    return g.element_flood(signed, _room(signed)[0])


def _at_namespace_limit(signed: bytes) -> bytes:
    # In scope at the Signature's children: the root's and ds:, so as many more as that
    # leaves room for, over as many elements as the element limit allows.
    elements, namespaces = _room(signed)
    return g.namespace_flood(g.element_flood(signed, elements), namespaces)


CASES: Final = (
    Case("namespace flood: 10,000 on the root (a replay)", lambda s: g.namespace_flood(s, 10_000)),
    Case(
        "namespace flood: 20,000 on the root, inclusive c14n",
        lambda s: g.inclusive_c14n(g.namespace_flood(s, 20_000)),
    ),
    Case("namespace declarations: 100,000 on elements", lambda s: g.namespace_spread(s, 100_000)),
    Case("certificate flood: 4,000 in KeyInfo", lambda s: g.certificate_flood(s, 4_000)),
    Case("element flood: 2,000,000 empty elements", lambda s: g.element_flood(s, 2_000_000)),
    Case("processing instructions: 1,000,000", lambda s: g.pi_flood(s, 1_000_000)),
    Case("attributes: 100,000 on one element", lambda s: g.attribute_flood(s, 100_000)),
    Case("attributes: 1,000,000, 16 per element", lambda s: g.attribute_spread(s, 1_000_000)),
    Case("text: one of 9,000,000 characters", lambda s: g.text_flood(s, 9_000_000)),
    Case("SignedInfo: 9 MB", lambda s: g.signed_info_flood(s, 9_000_000)),
    Case("references: 50,000", lambda s: g.reference_flood(s, 50_000)),
    Case("within limits: 200,000 elements", _at_element_limit),
    Case(
        "within limits: 64 attributes per element, 199,000 in all",
        lambda s: g.attribute_spread(s, 199_000, per_element=64),
    ),
    Case("within limits: 64 namespaces in scope, 200,000 elements", _at_namespace_limit),
    Case("within limits: schema-invalid at the end of 9.5 MB (signed)", None, quick=False),
)


@dataclass(frozen=True)
class Figure:
    """One input decided: its size, CPU seconds, peak RSS and the decision."""

    name: str
    bytes: int
    seconds: float
    peak_rss_mb: float
    decision: str
    valid_seconds: float = 0.0
    valid_peak_rss_mb: float = 0.0

    @property
    def ratio(self) -> float:
        return self.seconds / self.valid_seconds if self.valid_seconds else 0.0


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _decide(world: Path, body_file: Path) -> tuple[float, float, str]:
    """Runs in a fresh process: load the world, decide one message, report the cost."""
    parts = load_parts(load_settings(world / "xbroker.toml"))
    for standard in parts.catalog.standards:
        standard.prepare_report()
    pipeline = Pipeline(catalog=parts.catalog, verifier=parts.verifier(), directory=parts.directory)
    body = body_file.read_bytes()
    started = time.process_time()
    decision = pipeline.process(body, at=datetime.now(UTC))
    seconds = time.process_time() - started
    outcome = "accepted" if isinstance(decision, Accepted) else str(decision.reason)
    return seconds, _peak_rss_mb(), outcome


def _signer(world: Path) -> Signer:
    cert, key = party_paths(world / "pki", AUTHORS["ec"])
    return Signer.from_files(key, cert)


class _Inputs:
    """Signed inputs for one run, written to files the deciding processes read."""

    def __init__(self, world: Path, folder: Path) -> None:
        self._folder = folder
        self._catalog = offline_parts(world).catalog
        self._signer = _signer(world)
        self._valid: dict[int, Path] = {}
        self.small = self._signer.sign(content(self._catalog, SMALL)[0])
        self._count = 0

    def write(self, body: bytes) -> Path:
        self._count += 1
        path = self._folder / f"input-{self._count}.xml"
        path.write_bytes(body)
        return path

    def valid(self, size: int) -> Path:
        """A valid Bauantrag of about ``size`` bytes, signed (one per size, rounded)."""
        key = int(float(f"{size:.2g}"))
        if key not in self._valid:
            root, standard = content(self._catalog, LARGE)
            grow_to(root, key)
            standard.validate(root)
            self._valid[key] = self.write(self._signer.sign(root))
        return self._valid[key]

    def schema_invalid(self, size: int) -> Path:
        root, _ = content(self._catalog, LARGE)
        grow_to(root, size)
        last = root.findall("antrag/anlage")[-1]
        last[2].text = "not a sha-256"
        return self.write(self._signer.sign(root))


def _special(case: Case, inputs: _Inputs) -> Path:
    return inputs.schema_invalid(9_500_000)


def measure(
    cases: Sequence[Case],
    say: Callable[[str], None] = lambda _: None,
    *,
    yardstick: bool = True,
) -> list[Figure]:
    """Decide every case and its valid counterpart, each in a fresh process, after the
    valid 100 KB message (unless ``yardstick`` is false)."""
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="xbroker-hostile-") as tmp:
        world, folder = Path(tmp) / "world", Path(tmp) / "inputs"
        world.mkdir()
        folder.mkdir()
        inputs = _Inputs(world, folder)
        context = get_context("spawn")
        with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:

            def decide(path: Path) -> tuple[float, float, str]:
                return pool.submit(_decide, world, path).result()

            if yardstick:
                valid = inputs.valid(100_000)
                seconds, peak, outcome = decide(valid)
                figures.append(
                    Figure("valid: 100 KB", valid.stat().st_size, seconds, peak, outcome)
                )
                say(f"valid 100 KB: {seconds * 1000:.1f} ms CPU, peak RSS {peak:.0f} MB")
            for case in cases:
                path = (
                    inputs.write(case.make(inputs.small))
                    if case.make is not None
                    else _special(case, inputs)
                )
                size = path.stat().st_size
                seconds, peak, outcome = decide(path)
                valid_seconds, valid_peak, valid_outcome = decide(inputs.valid(size))
                if valid_outcome != "accepted":
                    raise RuntimeError(f"the valid message of {size} bytes is {valid_outcome}")
                figure = Figure(case.name, size, seconds, peak, outcome, valid_seconds, valid_peak)
                figures.append(figure)
                say(
                    f"{case.name}: {size / 1024:,.0f} KB, {outcome}, "
                    f"{seconds * 1000:,.1f} ms CPU ({figure.ratio:.1f}x valid), "
                    f"peak RSS {peak:.0f} MB"
                )
    return figures


def render(figures: Sequence[Figure]) -> str:
    lines = [
        "Hostile inputs: CPU ms to decide, peak RSS of the deciding process, and the same "
        "for a valid message of the same size",
        f"  {'input':<60} {'KB':>8} {'decision':<22} {'ms':>9} {'valid ms':>9} "
        f"{'ratio':>6} {'MB':>6} {'valid MB':>8}",
    ]
    for f in figures:
        lines.append(
            f"  {f.name:<60} {f.bytes / 1024:>8,.0f} {f.decision:<22} "
            f"{f.seconds * 1000:>9,.1f} {f.valid_seconds * 1000:>9,.1f} "
            f"{f.ratio:>6.2f} {f.peak_rss_mb:>6.0f} {f.valid_peak_rss_mb:>8.0f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="leave out the slowest cases")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    args = parser.parse_args(argv)
    figures = measure(
        [c for c in CASES if c.quick or not args.quick],
        lambda text: print(f"[bench] {text}", file=sys.stderr, flush=True),
    )
    print(render(figures))
    if args.json is not None:
        rows: list[dict[str, Any]] = [asdict(f) | {"ratio": f.ratio} for f in figures]
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
