"""The worker's device cache: served stale while refreshed, batches read in one query."""

from __future__ import annotations

import asyncio

from beanie import PydanticObjectId

from ingest.devices import DeviceDirectory
from models.devices import Device, DeviceStatus
from tests.client import Api
from tests.commands import CommandCounter
from tests.factories import create_device, register


async def set_status(device_id: str, status: DeviceStatus) -> None:
    await Device.get_pymongo_collection().update_one(
        {"_id": PydanticObjectId(device_id)}, {"$set": {"status": status.value}}
    )


async def until_refreshed(directory: DeviceDirectory, device_id: str) -> DeviceStatus | None:
    """The cached status once the background refresh has run."""
    async with asyncio.timeout(10):
        while directory._refresher is None or not directory._refresher.done():
            await asyncio.sleep(0.01)
    info = await directory.lookup(device_id)
    return info.status if info else None


async def test_expired_entry_served_at_once_and_refreshed_in_background(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session)
    directory = DeviceDirectory(ttl_seconds=0.05)
    first = await directory.lookup(device.id)
    assert first is not None and first.owner_id == session.user_id
    await set_status(device.id, DeviceStatus.ONLINE)
    await asyncio.sleep(0.1)  # expired
    # The old answer comes back without waiting for the database...
    stale = await directory.lookup(device.id)
    assert stale is not None and stale.status == first.status != DeviceStatus.ONLINE
    # ...and the new one once the refresh it started is done.
    assert await until_refreshed(directory, device.id) == DeviceStatus.ONLINE


async def test_device_deleted_behind_the_cache_goes_at_the_next_refresh(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session)
    directory = DeviceDirectory(ttl_seconds=0.05)
    assert await directory.lookup(device.id) is not None
    await Device.get_pymongo_collection().delete_one({"_id": PydanticObjectId(device.id)})
    await asyncio.sleep(0.1)
    await directory.lookup(device.id)  # stale, starts the refresh
    assert await until_refreshed(directory, device.id) is None


async def test_prefetch_reads_unknown_devices_in_one_query(
    api: Api, command_counter: CommandCounter
) -> None:
    session = await register(api)
    devices = [await create_device(api, session, name=f"d{n}") for n in range(5)]
    missing = str(PydanticObjectId())
    directory = DeviceDirectory(ttl_seconds=60)
    await directory.lookup(devices[0].id)  # already known: not read again
    ids = [d.id for d in devices] + [missing, devices[1].id, None]
    command_counter.commands.clear()
    command_counter.recording = True
    try:
        await directory.prefetch(ids)
        found = [await directory.lookup(d.id) for d in devices]
        unknown = await directory.lookup(missing)
    finally:
        command_counter.recording = False
    assert command_counter.commands == ["find"]
    assert [info.device_id for info in found if info] == [d.id for d in devices]
    assert unknown is None


async def test_forget_during_a_read_is_not_undone_by_its_answer(api: Api) -> None:
    session = await register(api)
    device = await create_device(api, session)
    directory = DeviceDirectory(ttl_seconds=60)
    reading = asyncio.create_task(directory.load([device.id]))
    await asyncio.sleep(0)  # the read is sent and awaits its answer
    assert directory._reads_in_flight == 1
    directory.forget(device.id)  # e.g. the API announced the device deleted
    await reading
    assert device.id not in directory._entries
    assert await directory.lookup(device.id) is not None  # read afresh
