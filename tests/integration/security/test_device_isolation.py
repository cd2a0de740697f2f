"""One hostile device against the real worker and broker: it cannot disturb the others.

- A device inventing thousands of metric names keeps at most its own share of anomaly
  series and evicts only its own: another device's baseline survives.
- A device flooding messages loses what is over its token bucket (counted as
  `rate_limited`, acknowledged), while a device sending at the same time keeps every
  reading.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import aiomqtt
from beanie import PydanticObjectId
from redis.asyncio import Redis

from core.settings import Settings
from models.readings import Reading
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import create_device, register
from tests.integration.alerts import conftest as alert_fixtures
from tests.integration.alerts.conftest import T0, eventually, send, start_alert_worker
from tests.integration.ingest.conftest import IngestIdentities, publisher_on, stop_worker

# The alert suite's fixtures (pytest finds fixtures among a module's attributes).
alert_identities = alert_fixtures.alert_identities
alert_settings = alert_fixtures.alert_settings
publisher = alert_fixtures.publisher


async def _stored(device_id: str) -> int:
    return await Reading.find(Reading.device_id == PydanticObjectId(device_id)).count()


async def test_keep_other_device_anomaly_baseline_under_metric_flood(
    api: Api, alert_settings: Settings, publisher: aiomqtt.Client, redis: Redis
) -> None:
    # A global bound small enough that the flood alone would exceed it.
    running, task = await start_alert_worker(
        alert_settings,
        redis,
        anomaly_max_series=1000,
        anomaly_max_metrics_per_device=64,
        anomaly_alerts=False,
    )
    try:
        user = await register(api)
        victim = (await create_device(api, user)).id
        attacker = (await create_device(api, user)).id
        await send(publisher, victim, "temp", [20.0 + (i % 2) * 0.5 for i in range(40)])
        await eventually(lambda: _at_least(victim, 40), what="the victim's baseline stored")
        # 3,000 distinct metric names, 100 per message (the contract's most per reading).
        messages = 30
        for m in range(messages):
            payload: dict[str, float | int] = {f"m{m}_{i}": float(i) for i in range(100)}
            payload["ts"] = int((T0 + timedelta(seconds=m)).timestamp() * 1000)
            await publisher.publish(f"devices/{attacker}/telemetry", json.dumps(payload), qos=1)
        await eventually(lambda: _at_least(attacker, messages), what="the flood stored")
        # The victim's baseline is intact: a spike is flagged at once, not after a warm-up.
        await send(publisher, victim, "temp", [100.0], start=T0 + timedelta(hours=1))
        await eventually(lambda: _at_least(victim, 41), what="the spike stored")
        spike = await Reading.find(
            Reading.device_id == PydanticObjectId(victim),
            Reading.anomaly == True,  # noqa: E712
        ).to_list()
        assert [r.values[0].value for r in spike] == [100.0]
        detector = running.alerts.detector
        assert detector is not None
        assert detector.series_count <= 64 + 1
        assert detector.device_series_count(attacker) == 64
    finally:
        await stop_worker(task)


async def _at_least(device_id: str, count: int) -> bool:
    return await _stored(device_id) >= count


async def test_drop_flooding_device_messages_rate_limited(
    api: Api,
    alert_settings: Settings,
    managed_broker: ManagedBroker,
    alert_identities: IngestIdentities,
    redis: Redis,
) -> None:
    rate, burst = 20.0, 100
    running, task = await start_alert_worker(
        alert_settings, redis, ingest_device_rate_per_second=rate, ingest_device_burst=burst
    )
    try:
        user = await register(api)
        flooder = (await create_device(api, user)).id
        normal = (await create_device(api, user)).id
        flood, steady = 1000, 40

        async def flood_messages() -> None:
            async with publisher_on(managed_broker, alert_identities) as client:
                await send(client, flooder, "temp", [20.0] * flood, step=0.001)

        async def steady_messages() -> None:
            async with publisher_on(managed_broker, alert_identities) as client:
                for i in range(steady):  # 10 a second: well under the rate
                    await send(client, normal, "temp", [20.0], start=T0 + timedelta(seconds=i))
                    await asyncio.sleep(0.1)

        started = time.monotonic()
        await asyncio.gather(flood_messages(), steady_messages())

        async def accounted() -> bool:
            dropped = running.stats.dropped_count("rate_limited")
            return await _stored(flooder) + dropped >= flood and await _stored(normal) >= steady

        await eventually(accounted, timeout=60, what="every flood message stored or dropped")
        elapsed = time.monotonic() - started
        stored = await _stored(flooder)
        dropped = running.stats.dropped_count("rate_limited")
        print(f"flood: {stored} stored, {dropped:.0f} rate_limited in {elapsed:.1f} s")
        assert await _stored(normal) == steady  # every reading of the other device
        assert stored + dropped == flood  # each flood message either stored or dropped once
        assert dropped >= flood / 2
        assert stored <= burst + rate * (elapsed + 1)
        # Acknowledged, not redelivered: nothing is left in flight.
        await asyncio.sleep(1)
        assert running.stats.dropped_count("rate_limited") == dropped
        assert await _stored(flooder) == stored
    finally:
        await stop_worker(task)
