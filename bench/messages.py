"""Signed messages of realistic sizes, made from the bundled samples and kept schema-valid.

Three sizes, each in two signatures (ECDSA P-256 and RSA-3072):

    2kb    xmeld 1.1 Anmeldung as shipped (one person, one dwelling)
    10kb   xbau 1.0 Bauantrag with enough ``anlage`` entries (documents referenced by
           name and SHA-256, as a building application lists its plans) to reach ~10 KB
    100kb  the same Bauantrag with ~100 KB of ``anlage`` entries

The size named is that of the content before signing; the signature adds about 1.4 KB
(ECDSA) or 2.3 KB (RSA, longer key and certificate), and the table shows the real size.
Every message gets its own nachrichtenUUID, because the broker deduplicates by it, and so
every message is signed on its own. Signing many is spread over processes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from copy import deepcopy
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from lxml import etree

from bench.parties import AGENCY_BAU, AGENCY_MELD, AUTHORS, KeyKind
from signing import Signer
from signing.keyfiles import party_paths
from xta_schemas import Catalog, Standard
from xta_schemas.samples import sample_root, with_fresh_header

__all__ = [
    "SIZES",
    "MessageClass",
    "all_classes",
    "content",
    "grow",
    "grow_to",
    "sign_many",
    "signed_sizes",
]

SIZES: dict[str, int] = {"2kb": 2_000, "10kb": 10_000, "100kb": 100_000}
_CHUNK = 500  # messages per signing task: big enough to amortise the task overhead


@dataclass(frozen=True, slots=True)
class MessageClass:
    """One kind of message in the benchmark: a size and a signature algorithm."""

    size: str  # a key of SIZES
    key: KeyKind

    @property
    def name(self) -> str:
        return f"{self.size}-{'ecdsa' if self.key == 'ec' else 'rsa'}"

    @property
    def author(self) -> str:
        return AUTHORS[self.key]

    @property
    def standard_key(self) -> str:
        return "xmeld/1.1" if self.size == "2kb" else "xbau/1.0"

    @property
    def agency(self) -> str:
        """The agency every message of this class is routed to."""
        return AGENCY_MELD if self.size == "2kb" else AGENCY_BAU


def all_classes() -> tuple[MessageClass, ...]:
    return tuple(MessageClass(size, key) for size in SIZES for key in ("ec", "rsa"))


def _set_party(root: etree._Element, path: str, kennung: str) -> None:
    element = root.find(f"nachrichtenkopf.g2g/{path}/kennung")
    if element is None:
        raise ValueError(f"the sample has no {path}/kennung")
    element.text = kennung


def grow(root: etree._Element, target: int) -> None:
    """Append ``anlage`` entries (distinct names and hashes) until ``target`` bytes."""
    template = root.find("antrag/anlage")
    if template is None:
        raise ValueError("the Bauantrag sample has no anlage to repeat")
    last = template
    number = 1
    while len(etree.tostring(root)) < target:
        for _ in range(max(1, (target - len(etree.tostring(root))) // 260)):
            number += 1
            entry = deepcopy(template)
            entry[0].text = f"Bauvorlage {number}: Grundriss, Schnitt und Ansicht Geschoss {number}"
            entry[1].text = f"bauvorlage-{number:04d}-grundriss-schnitt-ansicht.pdf"
            entry[2].text = hashlib.sha256(f"anlage {number}".encode()).hexdigest()
            last.addnext(entry)
            last = entry


def grow_to(root: etree._Element, size: int) -> None:
    """``grow`` to about ``size`` bytes: it overshoots by the share its entries are longer
    than it guesses; in two steps the second's overshoot is a tenth of that."""
    grow(root, size * 9 // 10)
    grow(root, size)


def content(catalog: Catalog, cls: MessageClass) -> tuple[etree._Element, Standard]:
    """The unsigned message of a class (author and reader set), and its standard."""
    standard = catalog.get(cls.standard_key)
    code = "meldung.anmeldung.0200" if cls.size == "2kb" else "bau.antrag.0200"
    root = deepcopy(sample_root(standard, code))
    _set_party(root, "autor", cls.author)
    _set_party(root, "leser", cls.agency)
    if cls.size != "2kb":
        grow(root, SIZES[cls.size])
    standard.validate(root)  # a benchmark of invalid messages would measure rejections
    return root, standard


def _sign_chunk(pki: Path, cls: MessageClass, count: int) -> list[bytes]:
    """Runs in a pool process: sign ``count`` fresh copies of the class's message."""
    cert, key = party_paths(pki, cls.author)
    signer = Signer.from_files(key, cert)
    root, standard = content(Catalog.load(), cls)
    return [signer.sign(with_fresh_header(root, standard)) for _ in range(count)]


def sign_many(
    pki: Path, cls: MessageClass, count: int, processes: int | None = None
) -> list[bytes]:
    """``count`` signed messages of ``cls``, each with its own nachrichtenUUID."""
    if count <= _CHUNK:
        return _sign_chunk(pki, cls, count)
    chunks = [min(_CHUNK, count - start) for start in range(0, count, _CHUNK)]
    workers = processes or os.cpu_count() or 1
    # spawn: the caller may hold an event loop and AMQP sockets a fork would copy.
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        parts = pool.map(_sign_chunk, [pki] * len(chunks), [cls] * len(chunks), chunks)
        return [body for part in parts for body in part]


def signed_sizes(bodies: Sequence[bytes]) -> int:
    """The mean size in bytes of signed messages."""
    return sum(len(b) for b in bodies) // max(1, len(bodies))
