"""The CPU budget of one message: past it, the pipeline stops and says processing-limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broker.app import Parts
from broker.errors import Reason
from broker.pipeline import Accepted, Decision, Pipeline, Rejected
from tests.world import OfflineWorld, offline_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> OfflineWorld:
    return offline_world(tmp_path_factory.mktemp("budget"))


@pytest.fixture(scope="module")
def parts(world: OfflineWorld) -> Parts:
    return world.parts


@pytest.fixture
def signed(world: OfflineWorld) -> bytes:
    return world.signed("anmeldung-hamburg.xml")


def _pipeline(parts: Parts, budget: float | None) -> Pipeline:
    return Pipeline(
        catalog=parts.catalog, verifier=parts.verifier(), directory=parts.directory, budget=budget
    )


def _decide(pipeline: Pipeline, body: bytes) -> Decision:
    return pipeline.process(body, at=datetime.now(UTC))


def test_a_message_within_its_budget_is_decided_as_ever(parts: Parts, signed: bytes) -> None:
    assert isinstance(_decide(_pipeline(parts, 10.0), signed), Accepted)


def test_a_message_past_its_budget_is_rejected_with_processing_limit(
    parts: Parts, signed: bytes
) -> None:
    decision = _decide(_pipeline(parts, 1e-9), signed)

    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.PROCESSING_LIMIT
    assert "by the end of parse" in decision.detail


def test_the_budget_stops_the_pipeline_at_the_end_of_the_step_that_passed_it(
    parts: Parts, signed: bytes
) -> None:
    stages: list[str] = []
    pipeline = _pipeline(parts, 1e-9)
    pipeline.observe = lambda stage, seconds: stages.append(stage.value)

    _decide(pipeline, signed)

    assert stages == ["parse"]


def test_without_a_budget_nothing_is_timed_out(parts: Parts, signed: bytes) -> None:
    assert isinstance(_decide(_pipeline(parts, None), signed), Accepted)
