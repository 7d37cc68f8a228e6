"""The CPU budget of one message: past it, the pipeline stops and says processing-limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from broker.app import Parts, load_parts, party_signer
from broker.commands.demo import ensure_dev_pki
from broker.errors import Reason
from broker.pipeline import Accepted, Pipeline, Rejected
from broker.settings import load_settings
from signing import parse_untrusted
from tests.world import EXAMPLES, SUBMISSIONS
from xta_schemas.samples import with_fresh_header


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Parts:
    settings = load_settings(EXAMPLES / "xbroker.toml", state_dir=tmp_path_factory.mktemp("budget"))
    ensure_dev_pki(settings)
    return load_parts(settings)


def _signed(parts: Parts) -> bytes:
    root = parse_untrusted((SUBMISSIONS / "anmeldung-hamburg.xml").read_bytes())
    standard, _ = parts.catalog.identify(root)
    signer = party_signer(parts.settings, parts.settings.portal_kennung)
    return signer.sign(with_fresh_header(root, standard))


def _pipeline(parts: Parts, budget: float | None) -> Pipeline:
    return Pipeline(
        catalog=parts.catalog, verifier=parts.verifier(), directory=parts.directory, budget=budget
    )


def test_a_message_within_its_budget_is_decided_as_ever(parts: Parts) -> None:
    assert isinstance(
        _pipeline(parts, 10.0).process(_signed(parts), at=datetime.now(UTC)), Accepted
    )


def test_a_message_past_its_budget_is_rejected_with_processing_limit(parts: Parts) -> None:
    decision = _pipeline(parts, 1e-9).process(_signed(parts), at=datetime.now(UTC))

    assert isinstance(decision, Rejected)
    assert decision.reason is Reason.PROCESSING_LIMIT
    assert "by the end of parse" in decision.detail


def test_the_budget_stops_the_pipeline_at_the_end_of_the_step_that_passed_it(
    parts: Parts,
) -> None:
    stages: list[str] = []
    pipeline = _pipeline(parts, 1e-9)
    pipeline.observe = lambda stage, seconds: stages.append(stage.value)

    pipeline.process(_signed(parts), at=datetime.now(UTC))

    assert stages == ["parse"]


def test_without_a_budget_nothing_is_timed_out(parts: Parts) -> None:
    assert isinstance(
        _pipeline(parts, None).process(_signed(parts), at=datetime.now(UTC)), Accepted
    )
