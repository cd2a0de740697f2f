"""Two API processes and the worker change one twin at once: no change is lost, and the
document the broker keeps is the last one."""

from __future__ import annotations

import asyncio
import json

from core.settings import Settings
from ingest.worker import IngestWorker
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.factories import create_device, register
from tests.integration.twin.conftest import (
    Identity,
    device_client,
    eventually,
    observer,
    retained_desired,
    twin,
    update,
)
from tests.servers import serve_api


async def test_two_apis_and_worker_change_one_twin_nothing_lost(
    api: Api,
    settings: Settings,
    managed_broker: ManagedBroker,
    observer_identity: Identity,
    twin_worker: IngestWorker,
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    changes = 10
    async with (
        serve_api(settings) as second_url,
        Api(second_url) as second,
        device_client(managed_broker, device) as client,
    ):

        async def report(i: int) -> None:
            payload = json.dumps({f"r{i}": i})
            await client.publish(f"devices/{device.id}/twin/reported", payload, qos=1)

        results = await asyncio.gather(
            *(update((api, second)[i % 2], user, device.id, {f"d{i}": i}) for i in range(changes)),
            *(report(i) for i in range(changes)),
        )
        assert not any(result.errors for result in results if result is not None)

        async def all_reported() -> bool:
            reported = (await twin(api, user, device.id))["reported"]
            return len(reported) == changes

        await eventually(all_reported, what="every report merged")
    state = await twin(api, user, device.id)
    assert state["desired"] == {f"d{i}": i for i in range(changes)}
    assert state["reported"] == {f"r{i}": i for i in range(changes)}
    assert state["version"] == changes
    async with observer(managed_broker, observer_identity) as watcher:
        retained = await retained_desired(watcher, device.id)
    assert json.loads(retained or b"") == {"version": changes, "desired": state["desired"]}
