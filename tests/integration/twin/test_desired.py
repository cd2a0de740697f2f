"""device.twin and updateDesiredState through the real API, MongoDB and broker."""

from __future__ import annotations

import asyncio
import json

from core.settings import Settings
from models.twins import DeviceTwin
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.commands import CommandCounter
from tests.contract import op
from tests.factories import admin_and_user, create_device, register
from tests.integration.twin.conftest import (
    Identity,
    desired_of,
    device_client,
    next_message,
    observer,
    retained_desired,
    twin,
    update,
)


async def test_query_device_twin_new_device_empty(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    result = await api.execute(op("DeviceTwin"), {"id": device.id}, token=user.access_token)
    assert result.data["device"] == {
        "id": device.id,
        "twin": {
            "desired": {},
            "reported": {},
            "delta": {},
            "version": 0,
            "desiredUpdatedAt": None,
            "reportedUpdatedAt": None,
        },
    }


async def test_update_desired_state_merges_patch_and_counts_versions(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    first = await api.execute(
        op("UpdateDesiredState"),
        {"deviceId": device.id, "patch": {"interval": 5, "led": {"color": "red", "level": 3}}},
        token=user.access_token,
    )
    assert first.data["updateDesiredState"] == {
        "desired": {"interval": 5, "led": {"color": "red", "level": 3}},
        "reported": {},
        "delta": {"interval": 5, "led": {"color": "red", "level": 3}},
        "version": 1,
    }
    # RFC 7396: null removes a key, objects merge, the rest replaces.
    second = await update(
        api, user, device.id, {"led": {"color": None}, "mode": "eco"}, expected_version=1
    )
    assert second.data["updateDesiredState"]["desired"] == {
        "interval": 5,
        "led": {"level": 3},
        "mode": "eco",
    }
    assert second.data["updateDesiredState"]["version"] == 2
    stored = await twin(api, user, device.id)
    assert stored["version"] == 2 and stored["desired"]["mode"] == "eco"
    assert stored["desiredUpdatedAt"] is not None and stored["reportedUpdatedAt"] is None


async def test_update_desired_state_stale_expected_version_conflict(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    await update(api, user, device.id, {"interval": 5})
    stale = await update(api, user, device.id, {"interval": 1}, expected_version=0)
    assert stale.code == "CONFLICT"
    assert "version 1" in stale.message
    assert (await twin(api, user, device.id))["desired"] == {"interval": 5}


async def test_update_desired_state_unchanged_keeps_version(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    await update(api, user, device.id, {"interval": 5})
    again = await update(api, user, device.id, {"interval": 5.0, "absent": None})
    assert again.data["updateDesiredState"]["version"] == 1


async def test_update_desired_state_bad_patch_refused(api: Api, settings: Settings) -> None:
    user = await register(api)
    device = await create_device(api, user)
    for patch in ([1, 2], "interval", 5, None, {"$set": 1}, {"a.b": 1}, {"x": {"": 1}}):
        result = await update(api, user, device.id, patch)
        assert result.code == "BAD_USER_INPUT", (patch, result.errors)
    # Over TWIN_MAX_BYTES once merged: refused, nothing kept.
    await update(api, user, device.id, {"a": "x" * (settings.twin_max_bytes // 2)})
    too_big = await update(api, user, device.id, {"b": "y" * (settings.twin_max_bytes // 2)})
    assert too_big.code == "BAD_USER_INPUT"
    assert f"at most {settings.twin_max_bytes}" in too_big.message
    stored = await twin(api, user, device.id)
    assert (stored["version"], set(stored["desired"])) == (1, {"a"})


async def test_update_desired_state_concurrent_patches_none_lost(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    results = await asyncio.gather(*(update(api, user, device.id, {f"k{i}": i}) for i in range(12)))
    assert all(not r.errors for r in results)
    stored = await twin(api, user, device.id)
    assert stored["desired"] == {f"k{i}": i for i in range(12)}
    assert stored["version"] == 12
    assert sorted(r.data["updateDesiredState"]["version"] for r in results) == list(range(1, 13))


async def test_update_desired_state_concurrent_same_expected_version_one_wins(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    results = await asyncio.gather(
        *(update(api, user, device.id, {"winner": i}, expected_version=0) for i in range(8))
    )
    winners = [r for r in results if not r.errors]
    assert len(winners) == 1
    assert sorted(r.code for r in results if r.errors) == ["CONFLICT"] * 7
    stored = await twin(api, user, device.id)
    assert stored["version"] == 1
    assert stored["desired"] == winners[0].data["updateDesiredState"]["desired"]


async def test_twin_other_users_device_not_found(api: Api) -> None:
    admin, owner = await admin_and_user(api)
    intruder = await register(api)
    device = await create_device(api, owner)
    await update(api, owner, device.id, {"interval": 5})
    read = await api.execute(op("DeviceTwin"), {"id": device.id}, token=intruder.access_token)
    assert read.code == "NOT_FOUND"
    write = await update(api, intruder, device.id, {"interval": 1})
    assert write.code == "NOT_FOUND"
    assert write.message == "Device not found."
    missing = await update(api, intruder, "0" * 24, {"interval": 1})
    assert missing.message == write.message  # a foreign device looks like a missing one
    # The ADMIN may; the owner's document is untouched by the intruder.
    assert (await twin(api, admin, device.id))["desired"] == {"interval": 5}
    by_admin = await update(api, admin, device.id, {"interval": 7}, expected_version=1)
    assert by_admin.data["updateDesiredState"]["version"] == 2


async def test_update_desired_state_device_receives_document_retained(
    api: Api, managed_broker: ManagedBroker
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    async with device_client(managed_broker, device) as client:
        await client.subscribe(f"devices/{device.id}/twin/desired", qos=1)
        await update(api, user, device.id, {"interval": 5})
        live = await next_message(client)
        assert live.qos == 1
        assert desired_of(live) == {"version": 1, "desired": {"interval": 5}}
    await update(api, user, device.id, {"mode": "eco"})
    # A device connecting later gets the current document: the broker retains it.
    async with device_client(managed_broker, device) as client:
        await client.subscribe(f"devices/{device.id}/twin/desired", qos=1)
        later = await next_message(client)
        assert later.retain and later.qos == 1
        assert desired_of(later) == {"version": 2, "desired": {"interval": 5, "mode": "eco"}}


async def test_update_desired_state_concurrent_retained_is_last_version(
    api: Api, managed_broker: ManagedBroker, observer_identity: Identity
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    await asyncio.gather(*(update(api, user, device.id, {f"k{i}": i}) for i in range(10)))
    async with observer(managed_broker, observer_identity) as watcher:
        payload = await retained_desired(watcher, device.id)
    assert payload is not None
    assert json.loads(payload) == {"version": 10, "desired": {f"k{i}": i for i in range(10)}}


async def test_delete_device_clears_retained_desired_and_twin(
    api: Api, managed_broker: ManagedBroker, observer_identity: Identity
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    kept = await create_device(api, user, name="kept")
    await update(api, user, device.id, {"interval": 5})
    await update(api, user, kept.id, {"interval": 9})
    async with observer(managed_broker, observer_identity) as watcher:
        assert await retained_desired(watcher, device.id) is not None
        deleted = await api.execute(op("DeleteDevice"), {"id": device.id}, token=user.access_token)
        assert deleted.data == {"deleteDevice": True}
        assert await retained_desired(watcher, device.id) is None
        assert json.loads(await retained_desired(watcher, kept.id) or b"") == {
            "version": 1,
            "desired": {"interval": 9},
        }
    assert await DeviceTwin.get_pymongo_collection().count_documents({}) == 1


async def test_update_desired_state_literal_patch_as_documented(api: Api) -> None:
    # docs/devices.md writes the patch inline, as GraphiQL users do.
    user = await register(api)
    device = await create_device(api, user)
    query = (
        f'mutation {{ updateDesiredState(deviceId: "{device.id}", '
        'patch: {interval: 10, led: {color: "red"}}) { desired reported delta version } }'
    )
    result = await api.execute(query, token=user.access_token)
    assert result.data["updateDesiredState"] == {
        "desired": {"interval": 10, "led": {"color": "red"}},
        "reported": {},
        "delta": {"interval": 10, "led": {"color": "red"}},
        "version": 1,
    }


DEVICES_WITH_TWINS = """
query { devices(first: 50) { edges { node { id twin { desired version } } } } }
"""


async def test_devices_list_twins_one_read_whatever_count(
    api: Api, command_counter: CommandCounter
) -> None:
    user = await register(api)
    created: list[str] = []

    async def grow_to(count: int) -> None:
        while len(created) < count:
            device = await create_device(api, user, name=f"d{len(created)}")
            if len(created) % 2:  # half of them have a twin document
                await update(api, user, device.id, {"n": len(created)})
            created.append(device.id)

    async def twin_reads() -> int:
        command_counter.commands.clear()
        command_counter.documents.clear()
        command_counter.recording = True
        try:
            result = await api.execute(DEVICES_WITH_TWINS, token=user.access_token)
        finally:
            command_counter.recording = False
        nodes = {e["node"]["id"]: e["node"]["twin"] for e in result.data["devices"]["edges"]}
        for index, device_id in enumerate(created):
            expected = ({"n": index}, 1) if index % 2 else ({}, 0)
            assert (nodes[device_id]["desired"], nodes[device_id]["version"]) == expected
        return sum(
            1
            for name, document in zip(
                command_counter.commands, command_counter.documents, strict=True
            )
            if name == "find" and document["find"] == "device_twins"
        )

    await grow_to(3)
    assert await twin_reads() == 1
    await grow_to(10)
    assert await twin_reads() == 1
