"""Rules evaluated by a real worker on scripted telemetry over real MQTT.

Each test publishes readings with scripted timestamps, waits until they are stored and
the worker has no alert work left, then checks exactly which alerts exist and in which
state, and what arrived on real GraphQL subscriptions.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiomqtt
from beanie import PydanticObjectId
from redis.asyncio import Redis

from core.events import ReadingEvent, alert_device_channel, alert_owner_channel, device_channel
from core.settings import Settings
from ingest.http_intake import HTTP_INGEST_REDIS_NAME
from ingest.worker import IngestWorker
from models.alerts import Alert, AlertKind, AlertRule, AlertState
from models.readings import Reading
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import Session, admin_and_user, create_device, register
from tests.integration.alerts.conftest import (
    T0,
    alert_worker_settings,
    alerts_of,
    eventually,
    rule_applied,
    rule_dropped,
    send,
    settled,
)
from tests.integration.alerts.test_rules import CREATE_FULL, DISABLE, NO_DATA, UPDATE
from tests.integration.graph.test_subscriptions import client
from tests.integration.ingest.conftest import IngestIdentities, start_worker, stop_worker
from tests.integration.live import wait_numsub

UPDATED = """subscription Updated($deviceId: ID) { alertUpdated(deviceId: $deviceId) {
  id state clearedAt } }"""
CLEAR = """mutation Clear($id: ID!) { clearAlert(id: $id) { id state } }"""


async def threshold_rule(
    api: Api, session: Session, device_id: str, **fields: Any
) -> dict[str, Any]:
    result = await api.execute(
        CREATE_FULL,
        {"input": {"deviceId": device_id, "metric": "temp", **fields}},
        token=session.access_token,
    )
    rule: dict[str, Any] = result.data["createAlertRule"]
    return rule


def summary(alerts: list[Alert]) -> list[tuple[float | None, str, str | None]]:
    return [(a.value, a.state.value, a.cleared_by) for a in alerts]


async def test_raise_threshold_alert_once_per_excursion(
    api: Api,
    api_server: str,
    worker: IngestWorker,
    publisher: aiomqtt.Client,
    redis: Redis,
) -> None:
    _, user = await admin_and_user(api)
    device = await create_device(api, user)
    rule = await threshold_rule(api, user, device.id, max=30.0, severity="CRITICAL")
    await rule_applied(worker, device.id, rule["id"])
    async with client(api_server, user) as raised, client(api_server, user) as updated:
        await raised.subscribe("1", op("AlertRaised"))  # every device of the user's
        await updated.subscribe("1", UPDATED, {"deviceId": device.id})
        await wait_numsub(redis, alert_device_channel(device.id), 1)
        await wait_numsub(redis, alert_owner_channel(user.user_id), 1)
        # in, out x3 (one alert), back in (cleared), out again (a second alert)
        await send(publisher, device.id, "temp", [20, 31, 32, 33, 25, 35])
        await settled(worker, device.id, 6)
        first = (await raised.next_data())["alertRaised"]
        second = (await raised.next_data())["alertRaised"]
        cleared = (await updated.next_data())["alertUpdated"]
    alerts = await alerts_of(device.id)
    assert summary(alerts) == [(31.0, "CLEARED", "rule"), (35.0, "ACTIVE", None)]
    assert all(a.kind == AlertKind.THRESHOLD and str(a.rule_id) == rule["id"] for a in alerts)
    assert (first["id"], first["value"], first["state"], first["severity"]) == (
        str(alerts[0].id),
        31.0,
        "ACTIVE",
        "CRITICAL",
    )
    assert first["message"] == "temp = 31, above max 30"
    assert (second["id"], second["value"]) == (str(alerts[1].id), 35.0)
    assert (cleared["id"], cleared["state"]) == (str(alerts[0].id), "CLEARED")
    assert worker.stats.sample("ingest_alerts_raised_total", {"kind": "THRESHOLD"}) == 2
    assert worker.stats.sample("ingest_alerts_cleared_total") == 1


async def test_keep_one_alert_while_value_bounces_within_hysteresis(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    rule = await threshold_rule(api, user, device.id, min=10.0, max=30.0, hysteresis=2.0)
    await rule_applied(worker, device.id, rule["id"])
    await send(publisher, device.id, "temp", [31, 29, 31.5, 29.5, 32, 28.5, 30.5, 28.1])
    await settled(worker, device.id, 8)
    assert summary(await alerts_of(device.id)) == [(31.0, "ACTIVE", None)]
    # Back inside by the margin: cleared; then below min: a new alert.
    await send(publisher, device.id, "temp", [27.9, 9.5], start=T0.replace(minute=5))
    await settled(worker, device.id, 10)
    assert summary(await alerts_of(device.id)) == [
        (31.0, "CLEARED", "rule"),
        (9.5, "ACTIVE", None),
    ]


async def test_raise_only_after_duration_out_of_range(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    rule = await threshold_rule(api, user, device.id, max=30.0, durationSeconds=10)
    await rule_applied(worker, device.id, rule["id"])
    # Reading time, seconds after T0: out 0..5, inside at 8 (restarts), out from 9;
    # 15 is 6 s out, 19 is 10 s out: the alert is raised by the reading at 19.
    offsets = [0, 5, 8, 9, 15, 19, 25]
    values = [31, 32, 25, 31, 31.5, 33.5, 34]
    await send(publisher, device.id, "temp", values, offsets=offsets)
    await settled(worker, device.id, len(values))
    assert summary(await alerts_of(device.id)) == [(33.5, "ACTIVE", None)]


async def test_raise_no_data_alert_and_clear_on_data(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    quiet = await create_device(api, user)  # has a rule too, and keeps talking
    rules = []
    for target in (device, quiet):
        result = await api.execute(
            NO_DATA, {"deviceId": target.id, "seconds": 1}, token=user.access_token
        )
        rules.append(result.data["createNoDataRule"])
        await rule_applied(worker, target.id, rules[-1]["id"])
    await send(publisher, device.id, "temp", [20])

    async def silent_alert() -> list[Alert]:
        # Keep the other device talking: it must never be reported silent.
        await send(publisher, quiet.id, "temp", [20])
        return [a for a in await alerts_of(device.id) if a.state == AlertState.ACTIVE]

    [alert] = await eventually(silent_alert, what="a no-data alert")
    assert (alert.kind, alert.metric, alert.value, str(alert.rule_id)) == (
        AlertKind.NO_DATA,
        None,
        None,
        rules[0]["id"],
    )
    assert alert.message == "no data for 1 s"
    await send(publisher, device.id, "temp", [21])

    async def cleared() -> bool:
        [only] = await alerts_of(device.id)
        return only.state == AlertState.CLEARED

    await eventually(cleared, what="the no-data alert cleared")
    assert await alerts_of(quiet.id) == []


async def test_apply_rule_changes_announced_through_redis(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    rule = await threshold_rule(api, user, device.id, max=30.0)
    await rule_applied(worker, device.id, rule["id"])
    await api.execute(UPDATE, {"id": rule["id"], "input": {"max": 50}}, token=user.access_token)

    async def raised_max() -> bool:
        entry = worker.alerts._devices.get(device.id)
        return entry is not None and entry.by_id[rule["id"]][0].max_value == 50.0

    await eventually(raised_max, what="the new max applied")
    await send(publisher, device.id, "temp", [40])
    await settled(worker, device.id, 1)
    assert await alerts_of(device.id) == []
    await api.execute(DISABLE, {"id": rule["id"]}, token=user.access_token)
    await rule_dropped(worker, device.id, rule["id"])
    await send(publisher, device.id, "temp", [60], start=T0.replace(minute=1))
    await settled(worker, device.id, 2)
    assert await alerts_of(device.id) == []


async def test_raise_again_after_user_clears_open_alert(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    rule = await threshold_rule(api, user, device.id, max=30.0)
    await rule_applied(worker, device.id, rule["id"])
    await send(publisher, device.id, "temp", [31])
    await settled(worker, device.id, 1)
    [alert] = await alerts_of(device.id)
    cleared = await api.execute(CLEAR, {"id": str(alert.id)}, token=user.access_token)
    assert cleared.data["clearAlert"]["state"] == "CLEARED"

    async def worker_knows() -> bool:
        entry = worker.alerts._devices.get(device.id)
        return entry is not None and not entry.by_id[rule["id"]][1].open

    await eventually(worker_knows, what="the worker told of the clear")
    await send(publisher, device.id, "temp", [32], start=T0.replace(minute=1))
    await settled(worker, device.id, 2)
    assert summary(await alerts_of(device.id)) == [
        (31.0, "CLEARED", "user"),
        (32.0, "ACTIVE", None),
    ]


async def test_flag_anomalous_reading_and_raise_anomaly_alert(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, redis: Redis
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    normal = [20.0 + (0.3 if i % 3 == 0 else -0.2 if i % 3 == 1 else 0.05) for i in range(40)]
    series = [*normal, 45.0, 20.1]
    payload = [
        {"temp": value, "ts": int(T0.timestamp() * 1000) + i * 1000}
        for i, value in enumerate(series)
    ]
    async with redis.pubsub() as pubsub:
        await pubsub.subscribe(device_channel("readings", device.id))
        await publisher.publish(f"devices/{device.id}/telemetry", json.dumps(payload), qos=1)
        live: list[ReadingEvent] = []
        async with asyncio.timeout(20):
            async for message in pubsub.listen():
                if message["type"] == "message":
                    live.append(ReadingEvent.decode(message["data"]))
                if len(live) == len(series):
                    break
    assert [event.anomaly for event in live] == [False] * 40 + [True, False]
    await settled(worker, device.id, len(series))
    readings = (
        await Reading.find(Reading.device_id == PydanticObjectId(device.id))
        .sort("timestamp")
        .to_list()
    )
    assert [r.anomaly for r in readings] == [False] * 40 + [True, False]
    api_readings = await api.execute(
        op("Readings"), {"deviceId": device.id, "first": 2}, token=user.access_token
    )
    nodes = [edge["node"] for edge in api_readings.data["readings"]["edges"]]
    assert [(n["values"][0]["value"], n["anomaly"]) for n in nodes] == [
        (20.1, False),
        (45.0, True),
    ]
    [alert] = await alerts_of(device.id)
    assert (alert.kind, alert.metric, alert.value, alert.rule_id) == (
        AlertKind.ANOMALY,
        "temp",
        45.0,
        None,
    )
    assert alert.message.startswith("temp = 45 is anomalous (z = +")
    assert worker.stats.sample("ingest_anomalous_readings_total") == 1


async def test_rate_limit_anomaly_alerts_per_device(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    series = [20.0 + 0.1 * (i % 2) for i in range(40)] + [60.0, 20.0, 20.1, 70.0]
    payload = [
        {"temp": v, "ts": int(T0.timestamp() * 1000) + i * 1000} for i, v in enumerate(series)
    ]
    await publisher.publish(f"devices/{device.id}/telemetry", json.dumps(payload), qos=1)
    await settled(worker, device.id, len(series))
    flagged = await Reading.find(
        Reading.device_id == PydanticObjectId(device.id),
        Reading.anomaly == True,  # noqa: E712
    ).count()
    assert flagged == 2
    assert len(await alerts_of(device.id)) == 1  # one per anomaly_alert_interval_seconds


async def test_keep_one_open_alert_across_two_workers(
    api: Api,
    settings: Settings,
    managed_broker: ManagedBroker,
    alert_identities: IngestIdentities,
    publisher: aiomqtt.Client,
    redis: Redis,
) -> None:
    group = "alerts-shared-" + PydanticObjectId().__str__()[-8:]
    workers = []
    try:
        for _ in range(2):
            worker_settings = alert_worker_settings(
                settings, managed_broker, alert_identities, group=group
            )
            running, task = await start_worker(worker_settings, redis)
            await asyncio.wait_for(running.alerts.loaded.wait(), 10)
            workers.append((running, task))
        user = await register(api)
        device = await create_device(api, user)
        rule = await threshold_rule(api, user, device.id, max=30.0)
        for running, _ in workers:
            await rule_applied(running, device.id, rule["id"])
        await send(publisher, device.id, "temp", [31.0 + i for i in range(20)])

        async def all_settled() -> bool:
            stored = await Reading.find(Reading.device_id == PydanticObjectId(device.id)).count()
            return stored == 20 and all(w.alerts.pending_work == 0 for w, _ in workers)

        await eventually(all_settled, what="20 readings stored by two workers")
        received = [
            w.stats.sample("ingest_messages_received_total", {"kind": "telemetry"})
            for w, _ in workers
        ]
        # The broker spread the device's messages over both workers.
        assert sum(received) == 20 and min(received) > 0, received
        alerts = await alerts_of(device.id)
        assert [(a.state, str(a.rule_id)) for a in alerts] == [(AlertState.ACTIVE, rule["id"])]
        raised = sum(
            w.stats.sample("ingest_alerts_raised_total", {"kind": "THRESHOLD"}) for w, _ in workers
        )
        assert raised == 1
    finally:
        for _, task in workers:
            await stop_worker(task)


async def test_forget_rules_of_deleted_device(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    rule = await threshold_rule(api, user, device.id, max=30.0)
    await rule_applied(worker, device.id, rule["id"])
    deleted = await api.execute(op("DeleteDevice"), {"id": device.id}, token=user.access_token)
    assert deleted.data == {"deleteDevice": True}
    await rule_dropped(worker, device.id, rule["id"])


async def test_reload_every_rule_when_change_feed_comes_back(
    api: Api, worker: IngestWorker, publisher: aiomqtt.Client, redis: Redis
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    # Written behind the API's back: no notice, as if it had been lost with the feed.
    rule = AlertRule(
        owner_id=PydanticObjectId(user.user_id),
        device_id=PydanticObjectId(device.id),
        metric="temp",
        max_value=30.0,
    )
    await rule.insert()
    assert str(rule.id) not in worker.alerts.rule_ids(device.id)
    # Drop this worker's change feed only (the one connection of this database
    # subscribed to three channels), as a Redis restart or network cut would.
    database = redis.connection_pool.connection_kwargs.get("db", 0)
    feeds = [
        client
        for client in await redis.client_list()
        if int(client["db"]) == database
        and int(client["sub"]) == 3
        and client.get("name") != "iotplatform-bus"  # the API's shared bus
        and client.get("name") != HTTP_INGEST_REDIS_NAME  # the API's HTTP ingest alert feed
    ]
    assert len(feeds) == 1, feeds
    await redis.client_kill_filter(_id=feeds[0]["id"])
    await rule_applied(worker, device.id, str(rule.id))
    await send(publisher, device.id, "temp", [31])
    await settled(worker, device.id, 1)
    assert summary(await alerts_of(device.id)) == [(31.0, "ACTIVE", None)]
