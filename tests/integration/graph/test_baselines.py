"""The benchmark baselines (bench.baseline_api --per-item-loaders --per-subscriber-bus) stay
correct."""

from __future__ import annotations

from collections import Counter
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta

from beanie import PydanticObjectId
from redis.asyncio import Redis

from bench.baseline_api import PerItemLoaders
from core.events import device_channel
from core.settings import Settings
from graph.loaders import Loaders
from tests.client import Api
from tests.commands import CommandCounter
from tests.contract import op
from tests.factories import admin_and_user, create_device
from tests.integration.graph.test_devices import DEVICES_WITH_OWNERS, add_reading
from tests.integration.graph.test_subscriptions import (
    client,
    expected_reading,
    publish,
    reading_event,
)
from tests.integration.live import wait_numsub
from tests.processes import api_process

BASELINE_API = ("bench.baseline_api", "--per-item-loaders", "--per-subscriber-bus")


async def test_serve_baseline_api_process_same_answers_and_releases(
    api: Api, settings: Settings, redis: Redis
) -> None:
    _, user = await admin_and_user(api)
    devices = [await create_device(api, user, name=f"b{i}") for i in range(3)]
    stamp = datetime(2025, 5, 1, tzinfo=UTC)
    for number, device in enumerate(devices):
        await add_reading(device.id, stamp + timedelta(seconds=number), value=float(number))
    channel = device_channel("readings", devices[0].id)
    async with api_process(settings, module=BASELINE_API) as baseline_url:
        async with Api(baseline_url) as baseline:
            unbatched = await baseline.execute(DEVICES_WITH_OWNERS, token=user.access_token)
        batched = await api.execute(DEVICES_WITH_OWNERS, token=user.access_token)
        assert unbatched.data == batched.data
        assert all(e["node"]["latestReading"] for e in unbatched.data["devices"]["edges"])

        async with AsyncExitStack() as stack:
            subscribers = [
                await stack.enter_async_context(client(baseline_url, user)) for _ in range(2)
            ]
            for ws in subscribers:
                await ws.subscribe("1", op("ReadingAdded"), {"deviceId": devices[0].id})
            # The baseline's cost: a Redis subscription per GraphQL subscription.
            await wait_numsub(redis, channel, 2)
            await publish(redis, reading_event(devices[0].id, user.user_id))
            for ws in subscribers:
                assert await ws.next_data() == expected_reading(devices[0].id)
            await subscribers[0].stop("1")
            await wait_numsub(redis, channel, 1)
        # Disconnected: every Redis subscription is released.
        await wait_numsub(redis, channel, 0)


async def test_load_unbatched_loaders_one_query_per_key(
    api: Api,
    command_counter: CommandCounter,
) -> None:
    _, user = await admin_and_user(api)
    devices = [await create_device(api, user, name=f"q{i}") for i in range(4)]
    for device in devices:
        await add_reading(device.id, datetime(2025, 5, 1, tzinfo=UTC))
    keys = [PydanticObjectId(device.id) for device in devices]

    async def aggregates(loaders: Loaders) -> tuple[int, list[datetime]]:
        command_counter.commands.clear()
        command_counter.recording = True
        try:
            found = await loaders.latest_readings.load_many(keys)
        finally:
            command_counter.recording = False
        stamps = [reading.timestamp for reading in found if reading is not None]
        return Counter(command_counter.commands)["aggregate"], stamps

    batched_queries, batched = await aggregates(Loaders())
    unbatched_queries, unbatched = await aggregates(PerItemLoaders())
    assert batched == unbatched and len(batched) == len(keys)
    assert (batched_queries, unbatched_queries) == (1, len(keys))
