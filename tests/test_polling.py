"""`eventually`, the one polling helper of the tests (tests/polling.py)."""

from __future__ import annotations

import itertools

import pytest

from tests.polling import eventually


async def test_returns_the_first_true_value_of_a_plain_check() -> None:
    counter = itertools.count()

    value = await eventually(lambda: next(counter) >= 3 and "ready", what="ready", interval=0)

    assert value == "ready"


async def test_awaits_an_async_check() -> None:
    calls: list[int] = []

    async def check() -> int:
        calls.append(1)
        return len(calls) if len(calls) >= 2 else 0

    assert await eventually(check, what="two calls", interval=0) == 2


async def test_until_decides_which_value_is_awaited() -> None:
    counter = itertools.count()

    value = await eventually(
        lambda: next(counter), until=lambda n: n == 0 or n > 2, what="n", interval=0
    )

    assert value == 0  # a false value can be the awaited one


async def test_a_condition_never_met_fails_naming_it_and_the_last_value() -> None:
    with pytest.raises(AssertionError, match=r"not the queue empty within 0.05 s; last seen: 7"):
        await eventually(lambda: 7, until=lambda n: n == 0, what="the queue empty", timeout=0.05)


async def test_ignored_exceptions_count_as_not_yet() -> None:
    attempts = itertools.count()

    def check() -> bool:
        if next(attempts) < 2:
            raise ConnectionError("still starting")
        return True

    assert await eventually(check, what="up", interval=0, ignoring=(ConnectionError,))


async def test_an_ignored_exception_is_the_last_value_seen_on_timeout() -> None:
    def check() -> bool:
        raise ConnectionError("still starting")

    with pytest.raises(AssertionError, match="still starting"):
        await eventually(check, what="up", timeout=0.05, ignoring=(ConnectionError,))


async def test_any_other_exception_ends_the_wait_at_once() -> None:
    calls = itertools.count()

    def check() -> bool:
        next(calls)
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await eventually(check, what="never", ignoring=(ConnectionError,))
    assert next(calls) == 1


async def test_progressing_waits_past_the_timeout_while_the_value_moves() -> None:
    counter = itertools.count()

    value = await eventually(
        lambda: next(counter),
        until=lambda n: n >= 40,
        what="40 counted",
        timeout=0.1,
        interval=0.01,  # 40 polls take 0.4 s, four times the timeout
        progressing=True,
    )

    assert value == 40


async def test_progressing_fails_once_the_value_stops_moving() -> None:
    counter = itertools.count()

    with pytest.raises(AssertionError, match=r"within 0.05 s without progress; last seen: 3"):
        await eventually(
            lambda: min(next(counter), 3),
            until=lambda n: n >= 10,
            what="10 counted",
            timeout=0.05,
            interval=0.01,
            progressing=True,
        )
