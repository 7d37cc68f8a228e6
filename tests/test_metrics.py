"""Specification of `monitoring.Metrics`: names, labels, helpers, and a clean exposition."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from monitoring import CertificateExpiry, DeliveryOutcome, Metrics, ReceiptKind, Sealing, Stage
from monitoring.metrics import END_TO_END_BUCKETS, STAGE_BUCKETS


def value(
    registry: CollectorRegistry, name: str, labels: dict[str, str] | None = None
) -> float | None:
    return registry.get_sample_value(name, labels or {})


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry, version="1.2.3")


def test_metrics_register_on_the_injected_registry_only(registry: CollectorRegistry) -> None:
    from prometheus_client import REGISTRY

    Metrics(registry)
    assert value(registry, "xbroker_messages_received_total") == 0.0
    assert REGISTRY.get_sample_value("xbroker_messages_received_total") is None


def test_two_instances_on_separate_registries_do_not_clash() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    Metrics(first).received.inc()
    Metrics(second)
    assert value(first, "xbroker_messages_received_total") == 1.0
    assert value(second, "xbroker_messages_received_total") == 0.0


def test_every_exported_name_has_the_xbroker_prefix(metrics: Metrics) -> None:
    names = {family.name for family in metrics.registry.collect()}
    assert names
    assert all(name.startswith("xbroker_") for name in names)


def test_track_message_counts_received_and_holds_it_in_flight(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    with metrics.track_message():
        assert value(registry, "xbroker_messages_in_flight") == 1.0
    assert value(registry, "xbroker_messages_in_flight") == 0.0
    assert value(registry, "xbroker_messages_received_total") == 1.0


def test_track_message_releases_in_flight_when_handling_raises(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    with pytest.raises(RuntimeError), metrics.track_message():
        raise RuntimeError("handler failed")
    assert value(registry, "xbroker_messages_in_flight") == 0.0


def test_time_stage_observes_one_duration_in_the_stage_histogram(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    with metrics.time_stage(Stage.VERIFY):
        pass
    assert value(registry, "xbroker_stage_duration_seconds_count", {"stage": "verify"}) == 1.0
    assert value(registry, "xbroker_stage_duration_seconds_count", {"stage": "parse"}) == 0.0


def test_time_stage_observes_even_when_the_stage_raises(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    with pytest.raises(ValueError), metrics.time_stage("parse"):
        raise ValueError("malformed")
    assert value(registry, "xbroker_stage_duration_seconds_count", {"stage": "parse"}) == 1.0


def test_time_stage_refuses_a_stage_outside_the_bounded_set(metrics: Metrics) -> None:
    with pytest.raises(ValueError), metrics.time_stage("message-1234"):
        pass


def test_stage_buckets_span_50_microseconds_to_5_seconds() -> None:
    assert min(STAGE_BUCKETS) == 0.00005
    assert max(STAGE_BUCKETS) == 5.0
    assert list(STAGE_BUCKETS) == sorted(STAGE_BUCKETS)


def test_end_to_end_buckets_span_1_millisecond_to_60_seconds_with_the_slo_bound() -> None:
    assert min(END_TO_END_BUCKETS) == 0.001
    assert max(END_TO_END_BUCKETS) == 60.0
    assert 1.0 in END_TO_END_BUCKETS


def test_accept_counts_by_standard_and_message_type(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.accept("xmeld-1.2", "meldung.anmeldung.0200")
    labels = {"standard": "xmeld-1.2", "message_type": "meldung.anmeldung.0200"}
    assert value(registry, "xbroker_messages_accepted_total", labels) == 1.0


def test_reject_counts_by_reason_code(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.reject("schema-invalid")
    metrics.reject("schema-invalid")
    labels = {"reason": "schema-invalid"}
    assert value(registry, "xbroker_messages_rejected_total", labels) == 2.0


def test_reasons_given_at_construction_start_at_zero() -> None:
    registry = CollectorRegistry()
    Metrics(registry, reasons=["no-route", "signature-invalid"])
    assert value(registry, "xbroker_messages_rejected_total", {"reason": "no-route"}) == 0.0


def test_receipt_kinds_start_at_zero(metrics: Metrics, registry: CollectorRegistry) -> None:
    for kind in ReceiptKind:
        assert value(registry, "xbroker_receipts_total", {"kind": kind.value}) == 0.0


def test_duplicate_counts_by_message_type(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.duplicate("meldung.anmeldung.0200")
    labels = {"message_type": "meldung.anmeldung.0200"}
    assert value(registry, "xbroker_messages_duplicate_total", labels) == 1.0


def test_delivery_counts_by_agency_and_outcome(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.delivery("psw:02000000", DeliveryOutcome.DEAD_LETTERED)
    labels = {"agency": "psw:02000000", "outcome": "dead_lettered"}
    assert value(registry, "xbroker_deliveries_total", labels) == 1.0


def test_delivery_refuses_an_unknown_outcome(metrics: Metrics) -> None:
    with pytest.raises(ValueError):
        metrics.delivery("psw:02000000", "lost")


def test_webhook_attempt_counts_by_agency_and_outcome(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.webhook_attempt("psw:02000000", "timeout")
    labels = {"agency": "psw:02000000", "outcome": "timeout"}
    assert value(registry, "xbroker_webhook_attempts_total", labels) == 1.0


def test_end_to_end_latency_lands_in_the_one_second_bucket(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.observe_end_to_end("meldung.anmeldung.0200", 0.7)
    labels = {"message_type": "meldung.anmeldung.0200", "le": "1.0"}
    assert value(registry, "xbroker_end_to_end_latency_seconds_bucket", labels) == 1.0
    labels["le"] = "0.5"
    assert value(registry, "xbroker_end_to_end_latency_seconds_bucket", labels) == 0.0


def test_set_queue_records_depth_consumers_and_dead_letters(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    metrics.set_queue("psw:02000000", messages=7, consumers=2, dead_letters=1)
    agency = {"agency": "psw:02000000"}
    assert value(registry, "xbroker_agency_queue_messages", agency) == 7.0
    assert value(registry, "xbroker_agency_queue_consumers", agency) == 2.0
    assert value(registry, "xbroker_agency_dead_letter_messages", agency) == 1.0


def test_certificate_expiry_is_the_not_after_unix_time(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    not_after = datetime(2030, 1, 1, tzinfo=UTC)
    metrics.set_certificates([CertificateExpiry("psw:02000000", "1a2b", not_after)])
    labels = {"kennung": "psw:02000000", "serial": "1a2b"}
    assert value(registry, "xbroker_certificate_expiry_seconds", labels) == not_after.timestamp()


def test_set_certificates_drops_a_certificate_no_longer_registered(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    soon = datetime.now(UTC) + timedelta(days=3)
    metrics.set_certificates([CertificateExpiry("psw:02000000", "01", soon)])
    metrics.set_certificates([CertificateExpiry("psw:02000000", "02", soon)])
    old = {"kennung": "psw:02000000", "serial": "01"}
    assert value(registry, "xbroker_certificate_expiry_seconds", old) is None


def test_set_certificates_refuses_a_naive_not_after(metrics: Metrics) -> None:
    naive = datetime(2030, 1, 1)
    with pytest.raises(ValueError):
        metrics.set_certificates([CertificateExpiry("psw:02000000", "01", naive)])


def test_build_info_carries_version_and_python(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    samples = [s for f in registry.collect() if f.name == "xbroker_build" for s in f.samples]
    assert samples[0].labels["version"] == "1.2.3"
    assert samples[0].labels["python"]


def test_set_ready_publishes_one_or_zero(metrics: Metrics, registry: CollectorRegistry) -> None:
    metrics.set_ready(True)
    assert value(registry, "xbroker_ready") == 1.0
    metrics.set_ready(False)
    assert value(registry, "xbroker_ready") == 0.0


def test_follow_readiness_evaluates_the_checks_at_each_scrape(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    checks = {"amqp": False}
    metrics.follow_readiness(lambda: checks)
    assert value(registry, "xbroker_ready") == 0.0
    checks["amqp"] = True
    assert value(registry, "xbroker_ready") == 1.0


def test_follow_readiness_reads_a_raising_check_as_not_ready(
    metrics: Metrics, registry: CollectorRegistry
) -> None:
    def broken() -> dict[str, bool]:
        raise OSError("store unreachable")

    metrics.follow_readiness(broken)
    assert value(registry, "xbroker_ready") == 0.0


def populated_registry() -> CollectorRegistry:
    """A registry where every metric of `Metrics` has at least one sample."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, reasons=["schema-invalid"])
    with metrics.track_message(), metrics.time_stage(Stage.PARSE):
        pass
    metrics.accept("xmeld-1.2", "meldung.anmeldung.0200")
    metrics.reject("schema-invalid")
    metrics.duplicate("meldung.anmeldung.0200")
    metrics.delivery("psw:02000000", "delivered")
    metrics.copy("psw:02000000", Sealing.SEALED)
    metrics.receipt("accepted")
    metrics.webhook_attempt("psw:02000000", "success")
    metrics.observe_end_to_end("meldung.anmeldung.0200", 0.02)
    metrics.set_queue("psw:02000000", messages=0, consumers=1, dead_letters=0)
    metrics.set_waiting({"psw:02000000": 1})
    metrics.set_webhook_disabled("psw:02000000", False)
    expiry = CertificateExpiry("psw:02000000", "01", datetime(2030, 1, 1, tzinfo=UTC))
    metrics.set_certificates([expiry])
    metrics.set_ready(True)
    return registry


def test_every_metric_has_a_sample_in_the_populated_registry() -> None:
    registry = populated_registry()
    empty = [f.name for f in registry.collect() if not f.samples]
    assert empty == []


def test_promtool_check_metrics_is_clean_on_the_exposition(promtool: str) -> None:
    exposition = generate_latest(populated_registry())
    result = subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, check=False
    )
    problems = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, problems
    assert problems.strip() == ""
