"""Micro figures: what each step of the pipeline costs on the benchmark's messages.

Per message class, microseconds per message for: parse (hardened parser), verify
(``Verifier``: shape, chain, signxml) next to its floor (exclusive c14n of the signed
content, SHA-256, one public-key verification: work any verifier must do), identify
(standard, header, certificate registered for the author), validate (compiled schema),
route (routing facts and the pure routing function), and the whole ``Pipeline.process``.
The modules ``bench.signing`` and ``bench.standards`` add their own figures.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib
import io
import time
from collections.abc import Callable
from copy import deepcopy
from datetime import UTC, datetime
from typing import TypeVar

from cryptography import x509
from lxml import etree

from bench.signing import verify_public_key
from bench.world import BenchWorld
from broker.pipeline import Accepted, Pipeline
from routing import RoutingInput, route
from signing import parse_untrusted

__all__ = ["MICRO_STAGES", "class_figures", "module_figures"]

MICRO_STAGES = ("parse", "verify", "verify_floor", "identify", "validate", "route", "pipeline")
_DS = "{http://www.w3.org/2000/09/xmldsig#}"


_T = TypeVar("_T")


def _microseconds(action: Callable[[], object], budget: float) -> float:
    """Mean microseconds per call, repeating for about ``budget`` seconds."""
    action()  # warm up: compiled XPaths, trust store caches
    count, start = 0, time.perf_counter()
    while True:
        action()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= budget and count >= 5:
            return elapsed / count * 1e6


def _microseconds_each(
    prepare: Callable[[], _T], action: Callable[[_T], object], budget: float
) -> float:
    """Mean microseconds of ``action`` alone, each call on a fresh ``prepare()``.

    A difference of two means (parse and verify, less parse) came out at or below zero
    when the machine was busy; timing only the action does not.
    """
    action(prepare())  # warm up
    count, spent, start = 0, 0.0, time.perf_counter()
    while True:
        prepared = prepare()
        started = time.perf_counter()
        action(prepared)
        spent += time.perf_counter() - started
        count += 1
        if time.perf_counter() - start >= budget and count >= 5:
            return spent / count * 1e6


def _floor(body: bytes) -> Callable[[], object]:
    """c14n of the signed content, its SHA-256 and the public-key check of SignedInfo."""
    root = parse_untrusted(body)
    signature = root.find(f"{_DS}Signature")
    info = signature.find(f"{_DS}SignedInfo") if signature is not None else None
    if signature is None or info is None:
        raise ValueError("unsigned message")
    signed_info = etree.tostring(info, method="c14n", exclusive=True)
    raw = base64.b64decode(signature.findtext(f"{_DS}SignatureValue") or "")
    cert_text = signature.findtext(f".//{_DS}X509Certificate") or ""
    key = x509.load_der_x509_certificate(base64.b64decode(cert_text)).public_key()
    content = deepcopy(root)
    content.remove(content.find(f"{_DS}Signature"))  # type: ignore[arg-type]

    def once() -> object:
        digest = hashlib.sha256(etree.tostring(content, method="c14n", exclusive=True)).digest()
        verify_public_key(key, raw, signed_info)
        return digest

    return once


def class_figures(world: BenchWorld, body: bytes, budget: float) -> dict[str, float]:
    """Microseconds per message for each stage of the pipeline, on one signed message."""
    parts = world.parts
    verifier = parts.verifier()
    pipeline = Pipeline(catalog=parts.catalog, verifier=verifier, directory=parts.directory)
    at = datetime.now(UTC)
    decision = pipeline.process(body, at=at)
    if not isinstance(decision, Accepted):
        raise RuntimeError(f"the benchmark message is rejected: {decision}")
    verified = verifier.verify(parse_untrusted(body), at=at)
    signed = verified.signed
    standard, _ = parts.catalog.identify(signed)
    header = standard.header(signed)

    def identify() -> object:
        found, _ = parts.catalog.identify(signed)
        found.header(signed)
        return parts.directory.certificate_registered(header.author.kennung, verified.fingerprint)

    def routing() -> object:
        facts = standard.routing_facts(signed)
        return route(
            RoutingInput(
                author=header.author.kennung,
                nachrichtentyp=header.nachrichtentyp,
                version=standard.version,
                readers=tuple(r.kennung for r in header.readers),
                facts=facts,
                test=header.test,
            ),
            parts.directory,
        )

    return {
        "parse": _microseconds(lambda: parse_untrusted(body), budget),
        "verify": _microseconds_each(
            lambda: parse_untrusted(body), lambda root: verifier.verify(root, at=at), budget
        ),
        "verify_floor": _microseconds(_floor(body), budget),
        "identify": _microseconds(identify, budget),
        "validate": _microseconds(lambda: standard.validate(signed), budget),
        "route": _microseconds(routing, budget),
        "pipeline": _microseconds(lambda: pipeline.process(body, at=at), budget),
    }


def module_figures(quick: bool) -> dict[str, dict[str, float]]:
    """The figures of ``bench.signing`` and ``bench.standards`` (where present).

    Their own printing is captured: the run prints one table at the end.
    """
    figures: dict[str, dict[str, float]] = {}
    for name in ("signing", "standards"):
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            figures[name] = dict(module.run(quick))
    return figures
