"""/broker/auth/...: the endpoints brokers other than Mosquitto ask (api/broker_auth.py),
against the session's API, Redis and database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from beanie import PydanticObjectId
from redis.asyncio import Redis

from core.settings import Settings
from models.devices import Device
from services.broker_auth import CACHE_PREFIX
from services.broker_identities import ingest_identities
from tests.client import Api
from tests.contract import op
from tests.factories import CreatedDevice, create_device, register

RABBIT = "/broker/auth/rabbitmq"
EMQX = "/broker/auth/emqx"


@pytest.fixture
async def broker(api_server: str, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The broker's side: HTTP Basic with BROKER_AUTH_SECRET as the password."""
    assert settings.broker_auth_secret is not None
    auth = ("rabbitmq", settings.broker_auth_secret.get_secret_value())
    async with httpx.AsyncClient(base_url=api_server, auth=auth, timeout=10) as client:
        yield client


async def answer(client: httpx.AsyncClient, path: str, **form: str) -> str:
    response = await client.post(f"{RABBIT}/{path}", data=form)
    assert response.status_code == 200, response.text
    return response.text


async def login(client: httpx.AsyncClient, device: CreatedDevice, password: str) -> str:
    return await answer(
        client,
        "user",
        username=device.mqtt_username,
        password=password,
        vhost="/",
        client_id=device.id,
    )


async def test_callers_without_the_secret_are_refused(api_server: str) -> None:
    async with httpx.AsyncClient(base_url=api_server, timeout=10) as anonymous:
        form = {"username": "x", "password": "y"}
        assert (await anonymous.post(f"{RABBIT}/user", data=form)).status_code == 401
        wrong = await anonymous.post(f"{RABBIT}/user", data=form, auth=("rabbitmq", "guess"))
        assert wrong.status_code == 401
        assert (await anonymous.post(f"{EMQX}/authn", json=form)).status_code == 401


async def test_device_login_and_topic_checks(api: Api, broker: httpx.AsyncClient) -> None:
    session = await register(api)
    device = await create_device(api, session)
    other = await create_device(api, await register(api))
    assert await login(broker, device, device.mqtt_password) == "allow"
    assert await login(broker, device, other.mqtt_password) == "deny"
    wrong_client = await answer(
        broker,
        "user",
        username=device.mqtt_username,
        password=device.mqtt_password,
        client_id=other.id,
    )
    assert wrong_client == "deny"
    assert await answer(broker, "vhost", username=device.id, vhost="/", ip="::1") == "allow"
    assert await answer(broker, "vhost", username=device.id, vhost="other", ip="::1") == "deny"
    foreign_id = await answer(
        broker, "vhost", username=device.id, vhost="/", ip="::1", client_id=other.id
    )
    assert foreign_id == "deny"

    def topic(permission: str, key: str) -> dict[str, str]:
        return {
            "username": device.id,
            "vhost": "/",
            "resource": "topic",
            "name": "amq.topic",
            "permission": permission,
            "routing_key": key,
            "variable_map.client_id": device.id,
        }

    assert (
        await answer(broker, "topic", **topic("write", f"devices.{device.id}.telemetry")) == "allow"
    )
    # Cross-tenant: another user's device's topics, both ways.
    assert await answer(broker, "topic", **topic("write", f"devices.{other.id}.telemetry")) == (
        "deny"
    )
    assert await answer(broker, "topic", **topic("read", f"devices.{other.id}.commands.#")) == (
        "deny"
    )
    assert await answer(broker, "topic", **topic("read", f"devices.{device.id}.commands.#")) == (
        "allow"
    )
    queue = {"username": device.id, "vhost": "/", "resource": "queue", "permission": "read"}
    own_queue = await answer(broker, "resource", **queue, name=f"mqtt-subscription-{device.id}qos1")
    assert own_queue == "allow"
    foreign = await answer(broker, "resource", **queue, name=f"mqtt-subscription-{other.id}qos1")
    assert foreign == "deny"


async def test_rotate_and_delete_take_effect_at_once(
    api: Api, broker: httpx.AsyncClient, redis: Redis
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    assert await login(broker, device, device.mqtt_password) == "allow"
    result = await api.execute(
        op("RotateDeviceCredentials"), {"id": device.id}, token=session.access_token
    )
    new_password = result.data["rotateDeviceCredentials"]["mqttPassword"]
    assert await login(broker, device, device.mqtt_password) == "deny"
    assert await login(broker, device, new_password) == "allow"
    await api.execute(op("DeleteDevice"), {"id": device.id}, token=session.access_token)
    assert await login(broker, device, new_password) == "deny"
    # A deleted device's authorisation checks are refused too.
    vhost = await answer(broker, "vhost", username=device.id, vhost="/", ip="::1")
    assert vhost == "deny"
    assert await redis.ttl(f"{CACHE_PREFIX}{device.id}") > 0


async def test_answers_come_from_redis_not_mongodb(api: Api, broker: httpx.AsyncClient) -> None:
    session = await register(api)
    device = await create_device(api, session)
    assert await login(broker, device, device.mqtt_password) == "allow"
    # Behind the API's back (no rotation): the cached version still answers, which
    # shows no MongoDB read per request; rotations and deletions write the cache.
    await Device.get_pymongo_collection().update_one(
        {"_id": PydanticObjectId(device.id)}, {"$inc": {"credentials_version": 5}}
    )
    assert await login(broker, device, device.mqtt_password) == "allow"


async def test_service_identities(settings: Settings, broker: httpx.AsyncClient) -> None:
    first = ingest_identities(settings)[0]
    ok = await answer(
        broker, "user", username=first.username, password=first.password, client_id="ingest-1"
    )
    assert ok == "allow"
    bound = await answer(
        broker, "user", username=first.username, password=first.password, client_id="ingest-2"
    )
    assert bound == "deny"
    assert await answer(broker, "user", username=first.username, password="nope") == "deny"
    assert await answer(broker, "user", username="iot-api-x", password="nope") == "deny"


async def test_emqx_endpoints(api: Api, broker: httpx.AsyncClient) -> None:
    device = await create_device(api, await register(api))
    other = await create_device(api, await register(api))
    creds = {"username": device.id, "password": device.mqtt_password, "clientid": device.id}
    allowed = await broker.post(f"{EMQX}/authn", json=creds)
    assert allowed.json() == {"result": "allow", "is_superuser": False}
    refused = await broker.post(f"{EMQX}/authn", json={**creds, "clientid": other.id})
    assert refused.json()["result"] == "deny"

    async def authz(topic: str, action: str) -> str:
        body = {"username": device.id, "clientid": device.id, "topic": topic, "action": action}
        response = await broker.post(f"{EMQX}/authz", json=body)
        assert response.status_code == 200
        return str(response.json()["result"])

    assert await authz(f"devices/{device.id}/telemetry", "publish") == "allow"
    assert await authz(f"devices/{other.id}/telemetry", "publish") == "deny"
    assert await authz(f"devices/{other.id}/commands/#", "subscribe") == "deny"
    assert (await broker.post(f"{EMQX}/authz", content=b"not json")).json()["result"] == "deny"
