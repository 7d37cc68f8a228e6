"""A seeded mutational fuzzer of the whole pipeline, on a validly signed message.

Each case applies one to three mutations, drawn from a seeded random generator, to the
bytes of a signed message: bytes flipped, replaced, deleted, duplicated or inserted,
slices moved, the input cut short, and markup put in (elements, attributes, namespace
declarations, comments, processing instructions, CDATA, entity references, a second
signature, a certificate more). ``Pipeline.process`` decides each. Two things may never
happen:

* an exception outside the project's error tree: the pipeline answers every input with
  a decision, whatever it is;
* an acceptance whose signed content differs from the original's: what the signature
  covers, in canonical form, and the header and recipients read from it, are the
  original's, or the message is refused.

The suite runs 2,000 cases (``tests/attacks/test_fuzz.py``); outside it::

    .venv/bin/python -m tests.attacks.fuzz --count 100000 [--seed N]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.utils import CryptographyDeprecationWarning

from broker.pipeline import Accepted, Pipeline
from signing import Verifier, parse_untrusted
from tests.attacks import generators as g
from tests.world import OfflineWorld, offline_world

__all__ = ["Tally", "fuzz", "main"]

Mutation = Callable[[random.Random, bytes], bytes]

_INTERESTING = b"<>&\"'=/:; \t\n\x00\xff?!-[]#x"
_MARKUP = (
    b"<x/>",
    b'<x a="1"/>',
    b'<p:x xmlns:p="urn:p"/>',
    b' xmlns:q="urn:q"',
    b' a="1"',
    b"<!-- c -->",
    b"<?p i?>",
    b"<![CDATA[<c>]]>",
    b"&amp;",
    b"&#x41;",
    b"&undefined;",
    b"</x>",
    b'<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"/>',
    b"<!DOCTYPE r>",
)


def _position(rng: random.Random, data: bytes) -> int:
    return rng.randrange(len(data) + 1)


def _flip(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + bytes([data[at] ^ (1 << rng.randrange(8))]) + data[at + 1 :]


def _replace(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + bytes([rng.choice(_INTERESTING)]) + data[at + 1 :]


def _delete(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    return data[:at] + data[at + rng.randint(1, 64) :]


def _duplicate(rng: random.Random, data: bytes) -> bytes:
    at = rng.randrange(len(data))
    piece = data[at : at + rng.randint(1, 256)]
    return data[:at] + piece + data[at:]


def _insert(rng: random.Random, data: bytes) -> bytes:
    at = _position(rng, data)
    return data[:at] + rng.randbytes(rng.randint(1, 16)) + data[at:]


def _move(rng: random.Random, data: bytes) -> bytes:
    start = rng.randrange(len(data))
    piece = data[start : start + rng.randint(1, 512)]
    rest = data[:start] + data[start + len(piece) :]
    at = _position(rng, rest)
    return rest[:at] + piece + rest[at:]


def _cut(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def _markup(rng: random.Random, data: bytes) -> bytes:
    # Just after some ">" or "<" of the document, where markup is most likely to parse.
    marks = [i for i, b in enumerate(data) if b in b"<>"]
    at = rng.choice(marks) + 1 if marks else _position(rng, data)
    return data[:at] + rng.choice(_MARKUP) + data[at:]


def _certificate(rng: random.Random, data: bytes) -> bytes:
    try:
        return g.certificate_flood(data, 1)
    except ValueError:  # an earlier mutation broke X509Data beyond finding
        return data


def _declarations(rng: random.Random, data: bytes) -> bytes:
    try:
        return g.namespace_flood(data, rng.randint(1, 8))
    except ValueError:
        return data


MUTATIONS: tuple[Mutation, ...] = (
    _flip,
    _replace,
    _delete,
    _duplicate,
    _insert,
    _move,
    _cut,
    _markup,
    _markup,
    _certificate,
    _declarations,
)


@dataclass
class Tally:
    """What the cases came to."""

    cases: int = 0
    crashes: list[tuple[int, str]] = field(default_factory=list)
    forged: list[int] = field(default_factory=list)
    decisions: Counter[str] = field(default_factory=Counter)

    @property
    def clean(self) -> bool:
        return not self.crashes and not self.forged


def _mutated(rng: random.Random, original: bytes) -> bytes:
    data = original
    for _ in range(rng.randint(1, 3)):
        if not data:
            break
        data = rng.choice(MUTATIONS)(rng, data)
    return data


def _signed_content(verifier: Verifier, data: bytes, at: datetime) -> bytes:
    return verifier.verify(parse_untrusted(data), at=at).signed_data


def fuzz(world: OfflineWorld, count: int, seed: int) -> Tally:
    """Decide ``count`` mutations of a signed message; the tally of what came of them."""
    parts = world.parts
    pipeline = Pipeline(catalog=parts.catalog, verifier=parts.verifier(), directory=parts.directory)
    original = world.signed("anmeldung-hamburg.xml")
    at = datetime.now(UTC)  # one time for every case: the certificates are valid then
    expected = pipeline.process(original, at=at)
    if not isinstance(expected, Accepted):
        raise RuntimeError(f"the original message is not accepted: {expected}")
    verifier = parts.verifier()
    content = _signed_content(verifier, original, at)
    rng = random.Random(seed)
    tally = Tally()
    for case in range(count):
        data = _mutated(rng, original)
        tally.cases += 1
        try:
            decision = pipeline.process(data, at=at)
        except Exception as exc:  # the oracle: nothing may escape the pipeline
            tally.crashes.append((case, f"{type(exc).__name__}: {exc}"))
            continue
        if isinstance(decision, Accepted):
            tally.decisions["accepted"] += 1
            same = (
                _signed_content(verifier, data, at) == content
                and decision.header == expected.header
                and decision.recipients == expected.recipients
            )
            if not same:
                tally.forged.append(case)
        else:
            tally.decisions[decision.reason.value] += 1
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.attacks.fuzz", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="cases (default 100,000)")
    parser.add_argument("--seed", type=int, default=20261130, help="of the random generator")
    args = parser.parse_args(argv)
    # Mutated certificates parse with warnings (a serial number of zero, say): expected.
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="xbroker-fuzz-") as tmp:
        tally = fuzz(offline_world(Path(tmp)), args.count, args.seed)
    print(f"{tally.cases:,} cases, seed {args.seed}, {time.perf_counter() - started:.0f} s")
    for outcome, number in tally.decisions.most_common():
        print(f"  {outcome:<24} {number:>8,}")
    print(f"exceptions outside the error tree: {len(tally.crashes)}")
    for case, error in tally.crashes[:20]:
        print(f"  case {case}: {error}")
    print(f"acceptances of other signed content: {len(tally.forged)} {tally.forged[:20]}")
    return 0 if tally.clean else 1


if __name__ == "__main__":
    sys.exit(main())
