"""2,000 seeded mutations of a signed message, through the whole pipeline: every one gets
a decision, and none is accepted with other content than what was signed
(``tests/attacks/fuzz.py``; 100,000 outside the suite with ``python -m tests.attacks.fuzz``)."""

from __future__ import annotations

import pytest

from tests.attacks.fuzz import Tally, fuzz
from tests.world import offline_world

CASES = 2_000
SEED = 20261130


@pytest.fixture(scope="module")
def tally(tmp_path_factory: pytest.TempPathFactory) -> Tally:
    return fuzz(offline_world(tmp_path_factory.mktemp("fuzz")), CASES, SEED)


def test_every_mutation_gets_a_decision_and_no_exception_escapes(tally: Tally) -> None:
    assert tally.cases == CASES
    assert tally.crashes == []


def test_no_mutation_is_accepted_with_other_content_than_was_signed(tally: Tally) -> None:
    assert tally.forged == []


def test_the_mutations_reach_past_the_parser(tally: Tally) -> None:
    # A fuzzer that only ever broke the XML would prove little about the verifier.
    assert {"digest-mismatch", "signature-invalid", "malformed-xml"} <= set(tally.decisions)
