"""Three RabbitMQ nodes clustered on loopback (tests/rabbitmq.py `RabbitCluster`), the
ingest queues quorum queues replicated over them, two `INGEST_SOURCE=amqp` workers.

A node is SIGKILLed in the middle of a QoS 1 stream from devices spread over the
nodes: the devices on it reconnect to a surviving node and resend what was not
acknowledged (DUP set, as MQTT 3.1.1 requires); every reading is stored exactly once
and seen live. Cross-tenant publishes and subscriptions are refused on every node.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiomqtt
import pytest
from redis.asyncio import Redis

from core.events import ReadingEvent, owner_channel
from core.settings import Settings
from tests.client import Api
from tests.factories import CreatedDevice, create_device, register
from tests.integration.broker.conftest import closed_by_broker
from tests.integration.live import wait_numsub
from tests.mqtt311 import MqttGone, Publisher311
from tests.rabbitmq import RabbitCluster, RabbitNode
from tests.system.faults.stack import eventually
from tests.system.rabbitmq.conftest import amqp_workers, assert_each_once, rabbit_client

DEVICES = 12
PER_DEVICE = 40
INTERVAL = 0.1  # seconds between a device's readings: a stream of about 4 s
KILL_AFTER = 12  # readings per device before the node dies


@dataclass
class StreamingDevice:
    """A device sending readings 0..count-1 at QoS 1; on a lost connection it goes to
    the next node and sends again, marked DUP, what got no PUBACK."""

    device: CreatedDevice
    nodes: list[RabbitNode]
    node: int
    sent: int = 0
    resent: int = 0
    # Seconds from losing its node to a PUBACK from another.
    outages: list[float] = field(default_factory=list)
    nodes_used: set[int] = field(default_factory=set)

    async def connect(self) -> Publisher311:
        while True:
            node = self.nodes[self.node]
            publisher = Publisher311(
                node.host,
                node.mqtt_port,
                client_id=self.device.id,
                username=self.device.mqtt_username,
                password=self.device.mqtt_password,
            )
            try:
                await publisher.__aenter__()
            except MqttGone:
                self.node = (self.node + 1) % len(self.nodes)
                await asyncio.sleep(0.1)
                continue
            self.nodes_used.add(self.node)
            return publisher

    async def run(self, count: int) -> None:
        publisher = await self.connect()
        topic = f"devices/{self.device.id}/telemetry"
        try:
            for n in range(count):
                payload = json.dumps({"n": n}).encode()
                mid = n % 0xFFFF + 1
                dup = False
                lost_at: float | None = None
                while True:
                    try:
                        await publisher.publish(topic, payload, mid=mid, dup=dup)
                        break
                    except MqttGone:
                        lost_at = lost_at or time.monotonic()
                        publisher.close()
                        self.node = (self.node + 1) % len(self.nodes)
                        publisher = await self.connect()
                        dup = True
                        self.resent += 1
                if lost_at is not None:
                    self.outages.append(time.monotonic() - lost_at)
                self.sent += 1
                await asyncio.sleep(INTERVAL)
        finally:
            publisher.close()


async def _subscription_refused(client: aiomqtt.Client, topic: str) -> bool:
    try:
        async with asyncio.timeout(5):
            codes = await client.subscribe(topic, qos=1)
        assert isinstance(codes, list | tuple)
        if all(code.is_failure for code in codes):
            return True
    except (aiomqtt.MqttError, TimeoutError):
        return True
    return await closed_by_broker(client, timeout=2)


@pytest.mark.parametrize("node_index", [0, 1, 2])
async def test_cross_tenant_refused_on_every_node(
    api: Api, rabbit_cluster: RabbitCluster, node_index: int
) -> None:
    # Run before the kill test; alone after it, the killed node is started again.
    node = rabbit_cluster.nodes[node_index]
    if node.process is None or node.process.poll() is not None:
        node.launch()
        node.wait_ready()
    victim = await create_device(api, await register(api))
    attacker = await create_device(api, await register(api))
    async with rabbit_client(node, attacker.mqtt_username, attacker.mqtt_password) as client:
        with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
            async with asyncio.timeout(5):
                await client.publish(f"devices/{victim.id}/telemetry", b'{"n": 1}', qos=1)
        assert await closed_by_broker(client)
    async with rabbit_client(node, attacker.mqtt_username, attacker.mqtt_password) as client:
        assert await _subscription_refused(client, f"devices/{victim.id}/commands/#")


async def test_node_killed_mid_stream_every_reading_stored_once(
    api: Api,
    settings: Settings,
    rabbit_cluster: RabbitCluster,
    redis: Redis,
    tmp_path: Path,
) -> None:
    nodes = rabbit_cluster.nodes
    session = await register(api)
    devices = [await create_device(api, session, name=f"d{i}") for i in range(DEVICES)]
    streams = [StreamingDevice(d, nodes, i % len(nodes)) for i, d in enumerate(devices)]
    channel = owner_channel("readings", session.user_id)
    seen: Counter[tuple[str, int]] = Counter()
    # Worker 1 starts on node 1, which declares the queues (their leaders start there),
    # worker 2 on node 2; node 1 dies: leaders, a worker's connection and a third of
    # the devices go with it.
    async with amqp_workers(settings, nodes, tmp_path, count=2) as workers, redis.pubsub() as live:
        await live.subscribe(channel)
        await wait_numsub(redis, channel, 1)

        async def follow() -> None:
            async for message in live.listen():
                if message["type"] == "message":
                    event = ReadingEvent.decode(message["data"])
                    seen[(event.device_id, int(event.values[0][1]))] += 1

        follower = asyncio.create_task(follow())
        senders = [asyncio.create_task(stream.run(PER_DEVICE)) for stream in streams]
        try:
            await eventually(
                lambda: _all_sent(streams, KILL_AFTER), timeout=30, what="the stream is under way"
            )
            live_before = sum(seen.values())
            nodes[0].kill()
            async with asyncio.timeout(90):
                await asyncio.gather(*senders)
            await assert_each_once(devices, PER_DEVICE, timeout=90)

            async def all_live() -> bool:
                return len(seen) == DEVICES * PER_DEVICE

            # Live subscribers kept receiving: every reading, also those after the kill.
            await eventually(all_live, timeout=15, what="every reading live")
            assert sum(seen.values()) > live_before
        finally:
            follower.cancel()
            for sender in senders:
                sender.cancel()
        # The worker whose node died reconnected to another and consumes again.
        for service, metrics in workers:
            service.assert_alive()
            await eventually(metrics.connected, timeout=15, what="the worker is connected")
        assert await workers[0][1].value("ingest_mqtt_reconnects_total") >= 1
    # The devices of the dead node came back on another one (and finished there).
    on_killed = [s for s in streams if 0 in s.nodes_used]
    assert len(on_killed) == DEVICES // len(nodes)
    assert all(s.outages and s.node != 0 for s in on_killed)
    moved = [s for s in streams if s.outages]
    back = sorted(max(s.outages) for s in moved)
    print(
        f"\n{len(moved)} devices moved off the killed node; back (PUBACK on a surviving "
        f"node) after median {back[len(back) // 2]:.2f} s, max {back[-1]:.2f} s; "
        f"{sum(s.resent for s in streams)} publishes resent with DUP"
    )


async def _all_sent(streams: list[StreamingDevice], count: int) -> bool:
    return all(stream.sent >= count for stream in streams)
