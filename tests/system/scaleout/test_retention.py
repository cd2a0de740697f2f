"""The deleter in real API processes: one killed mid-pass and another started finish the
work; two at once share it; nothing newer than a retention is deleted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from bson import ObjectId

from core.settings import Settings
from tests.integration.services.test_retention import add_device, add_readings, ages
from tests.processes import api_process

FAST = {
    "READING_RETENTION_DAYS": "30",
    "RETENTION_INTERVAL_SECONDS": "0.3",
    "RETENTION_BATCH_SIZE": "10",
    "RETENTION_BATCH_PAUSE_MS": "100",
}


async def wait_for_count(
    device: ObjectId, predicate: Callable[[list[float]], bool], timeout: float = 60
) -> list[float]:
    """The device's reading ages once `predicate` holds of them."""
    async with asyncio.timeout(timeout):
        while True:
            left = await ages(device)
            if predicate(left):
                return left
            await asyncio.sleep(0.05)


async def test_api_killed_mid_pass_next_process_deletes_rest(settings: Settings) -> None:
    own = await add_device(retention_days=2)
    expired = [3 + i / 100 for i in range(150)]
    kept = [0.5, 1.0, 1.9]
    await add_readings(own, expired + kept)
    async with api_process(settings, **FAST):
        await wait_for_count(own, lambda left: len(left) < len(expired + kept) - 20)
    # That process is gone (SIGTERM) in the middle of its pass.
    left = await ages(own)
    assert len(kept) < len(left) < len(expired + kept), "the pass was not cut short"
    assert set(kept) <= set(left)
    async with api_process(settings, **FAST):
        await wait_for_count(own, lambda left: len(left) == len(kept))
    assert await ages(own) == kept


async def test_two_apis_share_the_deletion(settings: Settings) -> None:
    own = await add_device(retention_days=1)
    default = await add_device()
    await add_readings(own, [2 + i / 100 for i in range(60)] + [0.5])
    await add_readings(default, [31 + i / 100 for i in range(60)] + [29.5, 0.5])
    async with api_process(settings, **FAST), api_process(settings, **FAST):
        await wait_for_count(own, lambda left: left == [0.5])
        await wait_for_count(default, lambda left: left == [0.5, 29.5])
