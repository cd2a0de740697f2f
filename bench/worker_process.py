"""A worker under benchmark, as its own process: `python -m bench.worker_process KIND`.

`ours` is the real ingest worker (ingest.worker.IngestWorker). `naive` is the
baseline the issue asks for: paho's callback, one insert_one per message, no
batching, no live path. `bare` is the floor of the stack's client: aiomqtt 2.5
(MQTT 5, QoS 1) that only counts what it receives. `lean` is the floor of ours:
ingest.mqtt receiving and acknowledging each message, nothing else. Each prints
"ready" once subscribed, and on SIGTERM a JSON line of what it did. BENCH_LOOP=uvloop
runs it on uvloop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

READY = "ready"  # printed once subscribed: the load may start


def ready() -> None:
    print(READY, flush=True)


def run[T](main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop when BENCH_LOOP=uvloop."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if os.environ.get("BENCH_LOOP") == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    return asyncio.run(main, loop_factory=factory)


def run_ours() -> None:
    from core.database import open_database
    from core.redis import open_redis
    from core.settings import get_settings
    from ingest.worker import IngestWorker

    async def serve() -> dict[str, Any]:
        settings = get_settings()
        async with open_database(settings), open_redis(settings) as redis:
            worker = IngestWorker(settings, redis)
            task = asyncio.create_task(worker.run())
            await worker.connected.wait()
            ready()
            loop = asyncio.get_running_loop()
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await task
            registry = worker.stats.registry
            return {
                "stored": worker.stats.stored_count(),
                "store_seconds": registry.get_sample_value("ingest_store_seconds_sum") or 0.0,
                "batches": registry.get_sample_value("ingest_store_seconds_count") or 0.0,
            }

    print(json.dumps(run(serve())), flush=True)


def run_naive() -> None:
    import paho.mqtt.client as mqtt
    from bson import ObjectId
    from paho.mqtt.enums import CallbackAPIVersion
    from pymongo import MongoClient

    from core.settings import get_settings

    settings = get_settings()
    database: MongoClient[dict[str, Any]] = MongoClient(settings.mongodb_url)
    collection = database[settings.mongodb_database]["readings"]
    stored = 0

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        nonlocal stored
        device_id = message.topic.split("/")[1]
        body = json.loads(message.payload)
        collection.insert_one(
            {
                "device_id": ObjectId(device_id),
                "timestamp": datetime.now(UTC),
                "values": [{"metric": k, "value": float(v), "unit": None} for k, v in body.items()],
                "anomaly": False,
            }
        )
        stored += 1

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-naive")
    password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
    client.username_pw_set(settings.mqtt_username, password)
    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe("devices/+/telemetry", qos=1)
    client.on_subscribe = lambda *_: ready()
    client.connect(settings.mqtt_host, settings.mqtt_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    client.loop_start()
    stop.wait()
    client.loop_stop()
    print(json.dumps({"stored": stored}), flush=True)


def run_bare() -> None:
    import aiomqtt
    from paho.mqtt.client import MQTTv5

    from core.settings import get_settings

    settings = get_settings()
    received = 0

    async def consume() -> None:
        nonlocal received
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        async with aiomqtt.Client(
            settings.mqtt_host,
            settings.mqtt_port,
            username=settings.mqtt_username,
            password=password,
            identifier=settings.ingest_client_id,
            protocol=aiomqtt.ProtocolVersion(MQTTv5),
        ) as client:
            await client.subscribe("devices/+/telemetry", qos=1)
            ready()
            async for _message in client.messages:
                received += 1

    async def serve() -> None:
        task = asyncio.create_task(consume())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run(serve())
    print(json.dumps({"received": received}), flush=True)


def run_lean() -> None:
    from core.settings import get_settings
    from ingest.mqtt import MqttSubscriber

    settings = get_settings()
    received = 0

    async def consume() -> None:
        nonlocal received
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        async with MqttSubscriber(
            settings.mqtt_host,
            settings.mqtt_port,
            client_id=settings.ingest_client_id,
            username=settings.mqtt_username,
            password=password,
        ) as client:
            await client.subscribe([("devices/+/telemetry", 1)])
            ready()
            async for batch in client.batches():
                received += len(batch)
                for delivery in batch:
                    delivery.ack()

    async def serve() -> None:
        task = asyncio.create_task(consume())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    run(serve())
    print(json.dumps({"received": received}), flush=True)


if __name__ == "__main__":
    {"ours": run_ours, "naive": run_naive, "bare": run_bare, "lean": run_lean}[sys.argv[1]]()
