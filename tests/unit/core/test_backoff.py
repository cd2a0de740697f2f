"""core.backoff: the waits of a retry loop."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from core.backoff import MQTT_RECONNECT, RETRY, Backoff, BackoffPolicy


def test_next_backoff_doubles_up_to_maximum() -> None:
    backoff = Backoff(BackoffPolicy(first=0.1, maximum=1.0))
    assert [backoff.next() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_next_backoff_maximum_below_first_applies_from_second_wait() -> None:
    # A configured cap (e.g. INGEST_RECONNECT_MAX_SECONDS) may be below the first wait.
    backoff = Backoff(BackoffPolicy(first=0.2, maximum=0.05))
    assert [backoff.next() for _ in range(3)] == [0.2, 0.05, 0.05]


def test_delay_backoff_is_the_next_wait() -> None:
    backoff = Backoff(BackoffPolicy(first=0.5, maximum=10.0, factor=3.0))
    assert backoff.delay == 0.5
    assert backoff.next() == 0.5
    assert backoff.delay == 1.5
    assert backoff.next() == 1.5


def test_reset_backoff_starts_over() -> None:
    backoff = Backoff(RETRY)
    for _ in range(10):
        backoff.next()
    assert backoff.delay == RETRY.maximum
    backoff.reset()
    assert backoff.next() == RETRY.first


def test_jitter_backoff_stays_under_the_exponential_wait() -> None:
    policy = BackoffPolicy(first=0.2, maximum=5.0, jitter=True)
    caps = [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    waits = []
    for seed in range(200):
        backoff = Backoff(policy, rng=random.Random(seed))
        waits.append([backoff.next() for _ in caps])
    for column, cap in enumerate(caps):
        spread = [row[column] for row in waits]
        assert all(0 <= wait <= cap for wait in spread)
        # Spread over the range, not bunched at one end.
        assert min(spread) < cap * 0.2
        assert max(spread) > cap * 0.8


def test_jitter_backoff_delay_is_what_next_returns() -> None:
    backoff = Backoff(MQTT_RECONNECT, rng=random.Random(1))
    for _ in range(5):
        announced = backoff.delay
        assert backoff.next() == announced


def test_jitter_backoff_reset_draws_from_first_wait() -> None:
    backoff = Backoff(MQTT_RECONNECT, rng=random.Random(2))
    for _ in range(10):
        backoff.next()
    backoff.reset()
    assert 0 <= backoff.delay <= MQTT_RECONNECT.first


@pytest.mark.parametrize(
    ("first", "maximum", "factor"),
    [(0.0, 1.0, 2.0), (-1.0, 1.0, 2.0), (0.1, 0.0, 2.0), (0.1, 1.0, 0.5)],
)
def test_create_policy_invalid_raises(first: float, maximum: float, factor: float) -> None:
    with pytest.raises(ValueError, match="invalid backoff policy"):
        BackoffPolicy(first=first, maximum=maximum, factor=factor)


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        RETRY.first = 1.0  # type: ignore[misc]


async def test_sleep_backoff_waits_the_delay_then_grows() -> None:
    backoff = Backoff(BackoffPolicy(first=0.01, maximum=1.0))
    started = time.monotonic()
    await backoff.sleep()
    assert time.monotonic() - started >= 0.009
    assert backoff.delay == pytest.approx(0.02)


async def test_sleep_backoff_cancelled_propagates() -> None:
    backoff = Backoff(BackoffPolicy(first=10.0, maximum=10.0))
    task = asyncio.create_task(backoff.sleep())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
