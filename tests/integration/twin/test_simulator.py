"""The simulator's devices keep their twin: desired interval applied, reported back."""

from __future__ import annotations

import asyncio
import time

from beanie import PydanticObjectId

from ingest.worker import IngestWorker
from models.readings import Reading
from simulator.fleet import SimulatedDevice, run_device
from simulator.twin import FIRMWARE_VERSION
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import create_device, register
from tests.integration.twin.conftest import eventually, twin, update


async def test_simulated_device_applies_desired_interval_and_reports_it(
    api: Api, managed_broker: ManagedBroker, twin_worker: IngestWorker
) -> None:
    user = await register(api)
    created = await create_device(api, user)
    device = SimulatedDevice(
        id=created.id,
        name="sim-twin",
        username=created.mqtt_username,
        password=created.mqtt_password,
    )
    running = asyncio.create_task(
        run_device(
            device,
            host=managed_broker.host,
            port=managed_broker.port,
            interval=2.0,
            until=time.monotonic() + 60,
        )
    )
    try:

        async def reported_interval(value: float) -> bool:
            return (await twin(api, user, created.id))["reported"].get("interval") == value

        # On connect it reports what it runs: the interval it was started with.
        await eventually(lambda: reported_interval(2.0), what="the first report")
        state = await twin(api, user, created.id)
        assert state["reported"]["firmwareVersion"] == FIRMWARE_VERSION
        assert isinstance(state["reported"]["uptime"], int)

        await update(api, user, created.id, {"interval": 0.1})
        await eventually(lambda: reported_interval(0.1), what="the new interval reported")
        assert (await twin(api, user, created.id))["delta"] == {}
        # And it runs it: ten readings a second instead of one every two seconds.
        before = device.sent
        await asyncio.sleep(1.0)
        assert device.sent - before >= 5

        async def stored(count: int) -> bool:
            oid = PydanticObjectId(created.id)
            return await Reading.find(Reading.device_id == oid).count() >= count

        await eventually(lambda: stored(5), what="the faster readings stored")

        # A desired interval it cannot take stays in the delta.
        await update(api, user, created.id, {"interval": "fast"})
        await asyncio.sleep(0.5)
        state = await twin(api, user, created.id)
        assert state["reported"]["interval"] == 0.1
        assert state["delta"] == {"interval": "fast"}
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
