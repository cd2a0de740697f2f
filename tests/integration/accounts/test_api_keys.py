"""API keys: shown once, stored hashed, accepted as a bearer token over HTTP and
WebSocket, refused once expired or revoked (open WebSockets closed at once)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from beanie import PydanticObjectId
from bson import ObjectId
from redis.asyncio import Redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from core.settings import Settings
from models.accounts import User, utcnow
from models.api_keys import ApiKey
from services.api_keys import revoke_all_api_keys
from tests.client import Api
from tests.contract import op
from tests.factories import admin_and_user, create_device, register
from tests.integration.accounts.helpers import create_key, with_key
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS, ws_url
from tests.integration.graph.test_subscriptions import (
    client,
    expected_reading,
    publish,
    reading_event,
)
from tests.integration.security.test_revocation import closed_code, subscribed
from tests.servers import serve_api, with_settings

REVOKED_CODE = 4401


async def test_create_api_key_shown_once_stored_hashed(api: Api) -> None:
    user = await register(api)

    key, node = await create_key(api, user, ["READ", "WRITE"], expires_in_days=30)

    assert key.startswith("iotk_") and len(key) >= 5 + 16 + 1 + 43
    assert node["name"] == "READ+WRITE key"
    assert node["scopes"] == ["READ", "WRITE"]
    assert node["lastUsedAt"] is None
    listed = await api.execute(op("ApiKeys"), token=user.access_token)
    assert listed.data["apiKeys"] == [node]
    assert key not in json.dumps(listed.body)
    # Neither the key nor its secret part is stored anywhere in the document.
    raw = await ApiKey.get_pymongo_collection().find_one({"_id": ObjectId(node["id"])})
    assert raw is not None
    secret = key.split("_", 2)[2]
    assert key not in str(raw) and secret[:20] not in str(raw)


async def test_create_api_key_two_keys_differ(api: Api) -> None:
    user = await register(api)
    first, _ = await create_key(api, user, ["READ"])
    second, _ = await create_key(api, user, ["READ"])
    assert first != second


@pytest.mark.parametrize(
    ("variables", "field"),
    [
        ({"name": "k", "scopes": []}, "scopes"),
        ({"name": "  ", "scopes": ["READ"]}, "name"),
        ({"name": "k", "scopes": ["READ"], "expiresInDays": 0}, "expiresInDays"),
        ({"name": "k", "scopes": ["READ"], "expiresInDays": 3651}, "expiresInDays"),
    ],
)
async def test_create_api_key_bad_input_refused(
    api: Api, variables: dict[str, object], field: str
) -> None:
    user = await register(api)
    result = await api.execute(op("CreateApiKey"), variables, token=user.access_token)
    assert result.code == "BAD_USER_INPUT"
    assert result.message.startswith(field)
    assert await ApiKey.get_pymongo_collection().count_documents({}) == 0


async def test_create_api_key_over_user_maximum_conflict(settings: Settings) -> None:
    async with serve_api(with_settings(settings, api_keys_per_user_max=2)) as url, Api(url) as api:
        user = await register(api)
        await create_key(api, user, ["READ"])
        await create_key(api, user, ["READ"])
        result = await api.execute(
            op("CreateApiKey"), {"name": "third", "scopes": ["READ"]}, token=user.access_token
        )
        assert result.code == "CONFLICT"
        # Another user has a quota of its own.
        await create_key(api, await register(api), ["READ"])


async def test_use_api_key_over_http_acts_as_owner(api: Api) -> None:
    user = await register(api)
    device = await create_device(api, user)
    key, node = await create_key(api, user, ["READ"])

    me = await api.execute(op("Me"), token=key)
    devices = await api.execute(op("Devices"), token=key)

    assert me.data["me"]["id"] == user.user_id
    assert [e["node"]["id"] for e in devices.data["devices"]["edges"]] == [device.id]
    used = (await api.execute(op("ApiKeys"), token=user.access_token)).data["apiKeys"][0]
    assert used["lastUsedAt"] is not None and used["lastUsedAt"] >= node["createdAt"]


async def test_use_api_key_last_used_written_once_per_interval(api: Api) -> None:
    user = await register(api)
    key, _node = await create_key(api, user, ["READ"])
    await api.execute(op("Me"), token=key)
    first = await ApiKey.get_pymongo_collection().find_one({})
    assert first is not None and first["last_used_at"] is not None

    for _ in range(3):
        assert (await api.execute(op("Me"), token=key)).codes == []

    again = await ApiKey.get_pymongo_collection().find_one({})
    assert again is not None and again["last_used_at"] == first["last_used_at"]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_use_api_key_over_websocket_subscription(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    key, _ = await create_key(api, user, ["READ"])
    async with client(api_server, with_key(user, key), protocol) as ws:
        await subscribed(ws, redis, device.id)
        await publish(redis, reading_event(device.id, user.user_id))
        assert await ws.next_data() == expected_reading(device.id)


@pytest.mark.parametrize(
    "token", ["iotk_0000000000000000_" + "x" * 43, "iotk_", "iotk_abc_def", "iotk_0123456789abcdef"]
)
async def test_use_api_key_unknown_or_malformed_unauthenticated(api: Api, token: str) -> None:
    assert (await api.execute(op("Me"), token=token)).code == "UNAUTHENTICATED"


async def test_use_api_key_right_lookup_wrong_secret_unauthenticated(api: Api) -> None:
    user = await register(api)
    key, _ = await create_key(api, user, ["READ"])
    forged = key[: key.rindex("_") + 1] + "A" * 43
    assert (await api.execute(op("Me"), token=forged)).code == "UNAUTHENTICATED"


async def test_use_api_key_expired_unauthenticated(api: Api, api_server: str) -> None:
    user = await register(api)
    key, _node = await create_key(api, user, ["READ"], expires_in_days=1)
    assert (await api.execute(op("Me"), token=key)).codes == []
    await ApiKey.get_pymongo_collection().update_one(
        {}, {"$set": {"expires_at": utcnow() - timedelta(seconds=1)}}
    )

    result = await api.execute(op("Me"), token=key)

    assert result.code == "UNAUTHENTICATED"
    assert result.message == "API key expired."
    async with connect(ws_url(api_server), subprotocols=[TRANSPORT_WS]) as ws:  # type: ignore[list-item]
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {key}"}})
        )
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_revoke_api_key_refused_at_once_its_websocket_closed(
    api: Api, api_server: str, redis: Redis, protocol: str
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    key, node = await create_key(api, user, ["READ"])
    other_key, _ = await create_key(api, user, ["READ"])
    async with (
        client(api_server, with_key(user, key), protocol) as ws,
        client(api_server, user, protocol) as by_token,
        client(api_server, with_key(user, other_key), protocol) as by_other_key,
    ):
        await by_token.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
        await by_other_key.subscribe("1", op("ReadingAdded"), {"deviceId": device.id})
        await subscribed(ws, redis, device.id)

        revoked = await api.execute(op("RevokeApiKey"), {"id": node["id"]}, token=user.access_token)

        assert revoked.data == {"revokeApiKey": True}
        assert (await api.execute(op("Me"), token=key)).code == "UNAUTHENTICATED"
        assert await closed_code(ws) == REVOKED_CODE
        # The user's other sockets, by token or by another key, stay open.
        await publish(redis, reading_event(device.id, user.user_id))
        assert await by_token.next_data() == expected_reading(device.id)
        assert await by_other_key.next_data() == expected_reading(device.id)
    listed = await api.execute(op("ApiKeys"), token=user.access_token)
    assert [k["id"] for k in listed.data["apiKeys"]] != [node["id"]]
    assert node["id"] not in json.dumps(listed.body)


async def test_revoke_api_key_websocket_on_other_api_process_closed(
    api: Api, settings: Settings, redis: Redis
) -> None:
    user = await register(api)
    device = await create_device(api, user)
    key, node = await create_key(api, user, ["READ"])
    async with serve_api(settings) as other, client(other, with_key(user, key)) as ws:
        await subscribed(ws, redis, device.id)

        await api.execute(op("RevokeApiKey"), {"id": node["id"]}, token=user.access_token)

        assert await closed_code(ws) == REVOKED_CODE


async def test_revoke_api_key_of_another_user_not_found(api: Api) -> None:
    owner = await register(api)
    attacker = await register(api)
    key, node = await create_key(api, owner, ["READ"])

    result = await api.execute(op("RevokeApiKey"), {"id": node["id"]}, token=attacker.access_token)
    missing = await api.execute(op("RevokeApiKey"), {"id": "0" * 24}, token=attacker.access_token)

    assert result.code == "NOT_FOUND"
    assert result.message == missing.message == "API key not found."
    assert (await api.execute(op("Me"), token=key)).data["me"]["id"] == owner.user_id
    # Nor does the other user see it listed.
    listed = await api.execute(op("ApiKeys"), token=attacker.access_token)
    assert listed.data == {"apiKeys": []}


async def test_revoke_api_key_of_another_user_by_admin_not_found(api: Api) -> None:
    admin, user = await admin_and_user(api)
    _key, node = await create_key(api, user, ["READ"])
    result = await api.execute(op("RevokeApiKey"), {"id": node["id"]}, token=admin.access_token)
    assert result.code == "NOT_FOUND"


async def test_use_api_key_owner_deleted_unauthenticated(api: Api) -> None:
    user = await register(api)
    key, _ = await create_key(api, user, ["READ"])
    await User.get_pymongo_collection().delete_many({"email": user.email})
    assert (await api.execute(op("Me"), token=key)).code == "UNAUTHENTICATED"


async def test_revoke_all_api_keys_refused_sockets_closed(
    api: Api, api_server: str, redis: Redis, api_app: Any
) -> None:
    """What a password reset calls: every key of the user stops working at once."""
    user = await register(api)
    other = await register(api)
    device = await create_device(api, user)
    key, _ = await create_key(api, user, ["READ"])
    second, _ = await create_key(api, user, ["WRITE"])
    kept, _ = await create_key(api, other, ["READ"])
    async with client(api_server, with_key(user, key)) as ws:
        await subscribed(ws, redis, device.id)

        count = await revoke_all_api_keys(
            PydanticObjectId(user.user_id), bus=api_app.state.platform.bus
        )

        assert count == 2
        assert await closed_code(ws) == REVOKED_CODE
    for token in (key, second):
        assert (await api.execute(op("Me"), token=token)).code == "UNAUTHENTICATED"
    assert (await api.execute(op("Me"), token=kept)).codes == []
