"""Standard Webhooks signatures and the retry schedule, without RabbitMQ."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from broker.errors import ConfigurationError
from broker.settings import Settings
from broker.webhook.queues import RetrySchedule, delay_queue
from broker.webhook.signature import WebhookSecret, signed_headers

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
BODY = b"<nachricht>\xc3\xa4</nachricht>"


def _now() -> int:
    return int(time.time())


def test_the_signature_verifies_with_the_standard_webhooks_library() -> None:
    headers = signed_headers(WebhookSecret(SECRET), "3f2c-uuid", _now(), BODY)

    Webhook(SECRET).verify(BODY, headers, json_parse=False)


def test_a_signature_made_with_another_secret_does_not_verify() -> None:
    other = "whsec_" + base64.b64encode(bytes(32)).decode()
    headers = signed_headers(WebhookSecret(other), "3f2c-uuid", _now(), BODY)

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers, json_parse=False)


def test_the_webhook_id_is_covered_by_the_signature() -> None:
    headers = signed_headers(WebhookSecret(SECRET), "3f2c-uuid", _now(), BODY)
    headers["webhook-id"] = "another-uuid"

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers, json_parse=False)


def test_a_secret_that_is_not_base64_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="whsec_<base64>"):
        WebhookSecret("whsec_not base64!")


def test_a_short_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="16 bytes"):
        WebhookSecret("whsec_" + base64.b64encode(b"short").decode())


def test_the_secret_is_never_shown() -> None:
    assert SECRET.removeprefix("whsec_") not in repr(WebhookSecret(SECRET))


def test_the_default_schedule_retries_for_about_three_days() -> None:
    schedule = RetrySchedule(Settings().webhook_retry_seconds)

    assert 60 * 3600 <= schedule.total_seconds <= 80 * 3600
    assert schedule.delays[:2] == (30, 120)


def test_the_schedule_gives_up_after_its_last_delay() -> None:
    schedule = RetrySchedule((1.0, 5.0))

    assert [schedule.delay_after(n) for n in (1, 2, 3)] == [1.0, 5.0, None]


def test_equal_delays_share_one_delay_queue() -> None:
    schedule = RetrySchedule((30, 43200, 43200))

    assert schedule.distinct == (30, 43200)
    assert delay_queue("gew:02000000", 43200) == "agency.gew:02000000.inbox.delay.43200s"
