"""Each class of hostile input, made from a signed message just past its limit, is refused
by the pipeline with the reason of that limit; just inside it, it is decided as ever.

The sizes come from the default limits (``ParserLimits``, ``VerificationPolicy``), so
the inputs stay small; ``bench.hostile`` measures the sizes the attacks were first seen
at, and ``tests/test_worker_stall.py`` sends those to a running worker.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from broker.pipeline import Accepted, Decision, Pipeline
from signing import ParserLimits, VerificationPolicy, parse_untrusted
from tests.attacks import generators as g
from tests.world import OfflineWorld, offline_world

LIMITS = ParserLimits()
POLICY = VerificationPolicy()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> OfflineWorld:
    return offline_world(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def signed(world: OfflineWorld) -> bytes:
    return world.signed("anmeldung-hamburg.xml")


@pytest.fixture(scope="module")
def pipeline(world: OfflineWorld) -> Pipeline:
    parts = world.parts
    return Pipeline(catalog=parts.catalog, verifier=parts.verifier(), directory=parts.directory)


def _room(signed: bytes) -> tuple[int, int, int]:
    """Elements, attributes and namespaces in scope the message leaves under the limits."""
    root = parse_untrusted(signed)
    elements = sum(1 for _ in root.iter())
    attributes = sum(len(e.attrib) for e in root.iter())
    in_scope = max(len(e.nsmap) for e in root.iter())
    return (
        LIMITS.max_elements - elements,
        LIMITS.max_attributes - attributes,
        LIMITS.max_namespaces_in_scope - in_scope,
    )


def _reason(decision: Decision) -> str:
    return "accepted" if isinstance(decision, Accepted) else decision.reason.value


PAST: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "namespaces in scope": (
        lambda s: g.namespace_flood(s, _room(s)[2] + 1),
        "too-many-namespaces",
    ),
    "namespace declarations": (
        lambda s: g.namespace_spread(s, LIMITS.max_namespaces),
        "too-many-namespaces",
    ),
    "elements": (lambda s: g.element_flood(s, _room(s)[0] + 1), "too-many-elements"),
    "processing instructions": (lambda s: g.pi_flood(s, _room(s)[0] + 1), "too-many-elements"),
    "attributes on one element": (
        lambda s: g.attribute_flood(s, LIMITS.max_attributes_per_element + 1),
        "too-many-attributes",
    ),
    "attributes": (
        lambda s: g.attribute_spread(s, _room(s)[1] + 16, per_element=16),
        "too-many-attributes",
    ),
    "a text past libxml2's bound": (
        lambda s: g.text_flood(s, LIMITS.max_text_length + 1),
        "malformed-xml",
    ),
    "certificates": (
        lambda s: g.certificate_flood(s, POLICY.max_certificates),
        "too-many-certificates",
    ),
    "SignedInfo": (
        lambda s: g.signed_info_flood(s, POLICY.max_signed_info_bytes),
        "signed-info-too-large",
    ),
    "references": (lambda s: g.reference_flood(s, 1), "signature-wrapping"),
    "inclusive c14n": (g.inclusive_c14n, "algorithm-not-allowed"),
}


@pytest.mark.parametrize("name", sorted(PAST))
def test_just_past_its_limit_each_class_is_refused_with_its_reason(
    name: str, signed: bytes, pipeline: Pipeline
) -> None:
    make, reason = PAST[name]

    assert _reason(pipeline.process(make(signed), at=datetime.now(UTC))) == reason


WITHIN: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    # Unused declarations are left out by exclusive c14n: the signature still holds, and
    # what was signed reaches the pipeline without them.
    "namespaces in scope": (lambda s: g.namespace_flood(s, _room(s)[2]), "accepted"),
    # Content the signature does not cover: the digest says so, after the limits let it in.
    "elements": (lambda s: g.element_flood(s, _room(s)[0]), "digest-mismatch"),
    "attributes on one element": (
        lambda s: g.attribute_flood(s, LIMITS.max_attributes_per_element),
        "digest-mismatch",
    ),
    "certificates": (
        lambda s: g.certificate_flood(s, POLICY.max_certificates - 1),
        "accepted",
    ),
}


@pytest.mark.parametrize("name", sorted(WITHIN))
def test_just_inside_its_limit_each_class_is_decided_as_ever(
    name: str, signed: bytes, pipeline: Pipeline
) -> None:
    make, outcome = WITHIN[name]

    assert _reason(pipeline.process(make(signed), at=datetime.now(UTC))) == outcome
