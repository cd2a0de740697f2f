"""Redis restarted: live subscriptions resume within 5 s on their open sockets, and the
worker neither crashes nor stops storing."""

from __future__ import annotations

import asyncio
import time

from beanie import PydanticObjectId
from redis.asyncio import Redis

from core.events import device_channel
from models.readings import Reading
from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.graph.test_subscriptions import Client
from tests.integration.graph.test_subscriptions import client as ws_client
from tests.integration.live import wait_numsub
from tests.system.faults.conftest import Stack
from tests.system.faults.stack import device_client, eventually, publish_reading

RESUME_WITHIN = 5.0


async def number_of(subscriber: Client) -> int:
    data = await subscriber.next_data("1")
    value: float = data["readingAdded"]["values"][0]["value"]
    return int(value)


async def test_restart_redis_subscriptions_resume_worker_stores_on(stack: Stack) -> None:
    async with Api(stack.url) as api:
        session = await register(api)
        device = await create_device(api, session)
    redis = Redis.from_url(stack.redis.url)
    published = 0
    try:
        async with (
            device_client(stack.broker, device) as mqtt,
            ws_client(stack.url, session, TRANSPORT_WS) as modern,
            ws_client(stack.url, session, LEGACY_WS) as legacy,
        ):
            subscribers = (modern, legacy)
            for subscriber in subscribers:
                await subscriber.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
            # Both on the API process's one Redis connection.
            await wait_numsub(redis, device_channel("readings", device.id), 1)
            await publish_reading(mqtt, device.id, published)
            published += 1
            assert [await number_of(s) for s in subscribers] == [0, 0]

            stack.redis.stop()
            await stack.redis.start()
            back = time.monotonic()
            # Published from now on (pub/sub kept nothing from the outage): the same
            # subscriptions, on the same sockets, receive them once the links are back.
            resumed = [asyncio.create_task(number_of(s)) for s in subscribers]
            while not all(task.done() for task in resumed):
                assert time.monotonic() - back < RESUME_WITHIN, (
                    f"subscriptions not resumed within {RESUME_WITHIN} s of Redis' return"
                )
                await publish_reading(mqtt, device.id, published)
                published += 1
                await asyncio.wait(resumed, timeout=0.1)
            print(f"subscriptions resumed {time.monotonic() - back:.2f} s after Redis came back")
            assert all(0 < task.result() < published for task in resumed)
    finally:
        await redis.aclose()

    # Storage never needed Redis: every reading is stored, once.
    async def all_stored() -> bool:
        stored = await Reading.find(Reading.device_id == PydanticObjectId(device.id)).count()
        return stored == published

    await eventually(all_stored, timeout=30, what=f"{published} readings stored")
    numbers = await Reading.get_pymongo_collection().distinct(
        "values.value", {"device_id": PydanticObjectId(device.id)}
    )
    assert sorted(numbers) == list(range(published))
    stack.worker.assert_alive()
    stack.api.assert_alive()
    assert "Traceback" not in stack.worker.output()
    await stack.healthy()
