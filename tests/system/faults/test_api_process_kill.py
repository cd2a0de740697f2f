"""An API process killed: its clients reconnect to the other process, subscribe again with
the same token, and catch up on what they missed from the stored readings."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from contextlib import suppress

import aiomqtt
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.events import device_channel
from tests.client import Api
from tests.contract import op
from tests.factories import Session, create_device, register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS, ws_url
from tests.integration.live import wait_numsub
from tests.system.faults.conftest import Stack
from tests.system.faults.stack import device_client, eventually, publish_reading


class FailoverSubscriber:
    """A dashboard's client: readingAdded on the first API that answers, and on the next
    one when its socket drops (what a load balancer in front of them would do)."""

    def __init__(self, urls: list[str], session: Session, protocol: str, device_id: str) -> None:
        self.urls = urls
        self.session = session
        self.protocol = protocol
        self.device_id = device_id
        self.numbers: list[int] = []
        self.served_by: list[str] = []
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        for url in self.urls:
            with suppress(ConnectionClosed, OSError):  # that process is gone
                await self._follow(url)
            self.subscribed.clear()

    async def _follow(self, url: str) -> None:
        async with connect(ws_url(url), subprotocols=[self.protocol]) as ws:  # type: ignore[list-item]
            init = {"authorization": f"Bearer {self.session.access_token}"}
            await ws.send(json.dumps({"type": "connection_init", "payload": init}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
            variables = {"deviceId": self.device_id}
            payload = {"query": op("ReadingAdded"), "variables": variables}
            await ws.send(json.dumps({"id": "live", "type": kind, "payload": payload}))
            self.served_by.append(url)
            self.subscribed.set()
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] in {"next", "data"}:
                    values = message["payload"]["data"]["readingAdded"]["values"]
                    self.numbers.append(int(values[0]["value"]))
                elif message["type"] not in {"ka", "ping", "pong"}:
                    raise AssertionError(f"unexpected {message}")


async def live_for_all(
    subscribers: list[FailoverSubscriber],
    mqtt: aiomqtt.Client,
    device_id: str,
    counter: Iterator[int],
) -> None:
    """Publish numbered readings until every subscriber hears one sent from now on (a
    subscription is live once its first event comes through)."""
    first = next(counter)
    await publish_reading(mqtt, device_id, first)

    async def heard() -> bool:
        if all(s.numbers and max(s.numbers) >= first for s in subscribers):
            return True
        await publish_reading(mqtt, device_id, next(counter))
        return False

    await eventually(heard, timeout=10, every=0.2, what="every subscriber hears a reading")


async def test_kill_api_process_clients_resubscribe_on_other(stack: Stack) -> None:
    doomed, doomed_url = await stack.start_api()
    async with Api(doomed_url) as api:
        session = await register(api)
        device = await create_device(api, session)
    channel = device_channel("readings", device.id)
    redis = Redis.from_url(stack.redis.url)
    subscribers = [
        FailoverSubscriber([doomed_url, stack.url], session, protocol, device.id)
        for protocol in (TRANSPORT_WS, LEGACY_WS)
    ]
    tasks = [asyncio.create_task(subscriber.run()) for subscriber in subscribers]
    counter = itertools.count()
    try:
        async with device_client(stack.broker, device) as mqtt:
            for subscriber in subscribers:
                await asyncio.wait_for(subscriber.subscribed.wait(), 10)
            await wait_numsub(redis, channel, 1)  # the doomed process's one connection
            await live_for_all(subscribers, mqtt, device.id, counter)

            doomed.kill()
            # While the clients fail over, the device goes on: live events are lost, the
            # readings are not.
            for _ in range(3):
                await publish_reading(mqtt, device.id, next(counter))

            async def resubscribed() -> bool:
                return all(s.subscribed.is_set() and len(s.served_by) == 2 for s in subscribers)

            await eventually(resubscribed, timeout=30, what="both subscribers re-subscribe")
            assert [s.served_by for s in subscribers] == [[doomed_url, stack.url]] * 2
            # Only the surviving process is subscribed now: the dead one's link is gone.
            await wait_numsub(redis, channel, 1)
            # Live again: a reading published now reaches both, through the other process.
            await live_for_all(subscribers, mqtt, device.id, counter)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()

    # What the socket missed, the client catches up on from the stored readings.
    published = next(counter)  # the count of numbers published: 0 .. published - 1
    async with Api(stack.url) as api:

        async def caught_up() -> list[int]:
            result = await api.execute(
                op("Readings"), {"deviceId": device.id, "first": 100}, token=session.access_token
            )
            edges = result.data["readings"]["edges"]
            numbers = sorted(int(e["node"]["values"][0]["value"]) for e in edges)
            return numbers if numbers == list(range(published)) else []

        await eventually(caught_up, timeout=30, what=f"readings 0..{published - 1} stored")
    stack.api.assert_alive()
    stack.worker.assert_alive()
