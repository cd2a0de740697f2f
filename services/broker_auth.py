"""Who may connect to a broker that asks over HTTP (RabbitMQ, EMQX: api/broker_auth.py).

The same identities Mosquitto's dynsec holds (services.broker_identities): a device
with its id as username and client id and its current derived password; ingest worker
n as `<MQTT_INGEST_USERNAME>-<n>` with client id `ingest-<n>`; an API process's two
connections `iot-api-<instance>` and `iot-api-<instance>-ota`, their passwords derived
from MQTT_PASSWORD. What each may do: services.broker_rules.

A device's credentials version is read from Redis (`broker-auth:device:<id>`), filled
from MongoDB on a miss: no MongoDB read per request. Rotation and deletion write the
entry themselves before they return (device_rotated, device_deleted), so every API
process answers with the new state at once.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Final

from beanie import PydanticObjectId
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.settings import ApiSettings
from core.topics import Party
from models.devices import Device
from services.broker_identities import (
    API_PREFIX,
    DEVICE_USERNAME,
    device_password,
    ingest_identities,
)
from services.broker_rules import BrokerParty
from services.credentials import derive_mqtt_password

logger = logging.getLogger(__name__)

CACHE_PREFIX: Final = "broker-auth:device:"
# A known version (or a deletion) is kept this long; MongoDB refills it after.
CACHE_SECONDS: Final = 300
# An id MongoDB does not know: short, so a device created meanwhile waits at most this.
ABSENT_SECONDS: Final = 5
GONE: Final = "-"
# Authorisation requests (8 of the 9 RabbitMQ sends per device connect) only ask whether
# the device still exists: this process remembers a yes this long. Logins always ask
# Redis, so a rotated or deleted device is refused at once; RabbitMQ itself keeps an open
# connection's topic permissions for the connection's life.
EXISTS_MEMORY_SECONDS: Final = 1.0
_EXISTS_MEMORY_MAX: Final = 100_000
_exists_until: dict[str, float] = {}
API_OTA_SUFFIX: Final = "-ota"


def _key(device_id: str) -> str:
    return f"{CACHE_PREFIX}{device_id}"


async def _device_version(redis: Redis, device_id: str) -> int | None:
    """The device's credentials version; None for a deleted or unknown device."""
    try:
        cached = await redis.get(_key(device_id))
    except RedisError as err:
        logger.warning("broker auth: Redis unavailable (%s); reading MongoDB", err)
        cached = None
        redis_up = False
    else:
        redis_up = True
    if cached is not None:
        value = cached.decode() if isinstance(cached, bytes) else str(cached)
        return None if value == GONE else int(value)
    document = await Device.get_pymongo_collection().find_one(
        {"_id": PydanticObjectId(device_id)}, {"credentials_version": 1}
    )
    version = None if document is None else int(document["credentials_version"])
    if redis_up:
        try:
            # NX: a rotation or deletion that wrote meanwhile stands.
            await redis.set(
                _key(device_id),
                GONE if version is None else str(version),
                ex=ABSENT_SECONDS if version is None else CACHE_SECONDS,
                nx=True,
            )
        except RedisError as err:
            logger.warning("broker auth: device version not cached (%s)", err)
    return version


async def device_rotated(redis: Redis, device_id: str, version: int) -> None:
    """After a rotation: only the new version's password is accepted from now on."""
    await redis.set(_key(device_id), str(version), ex=CACHE_SECONDS)


async def device_deleted(redis: Redis, device_id: str) -> None:
    """After a deletion: the device is refused from now on."""
    _exists_until.pop(device_id, None)
    await redis.set(_key(device_id), GONE, ex=CACHE_SECONDS)


async def _device_exists(redis: Redis, device_id: str) -> bool:
    now = time.monotonic()
    if _exists_until.get(device_id, 0.0) > now:
        return True
    if await _device_version(redis, device_id) is None:
        _exists_until.pop(device_id, None)
        return False
    if len(_exists_until) >= _EXISTS_MEMORY_MAX:
        _exists_until.clear()
    _exists_until[device_id] = now + EXISTS_MEMORY_SECONDS
    return True


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _api_party(username: str) -> Party:
    """An API process's OTA connection ends in -ota (services.broker_identities)."""
    return "api_ota" if username.endswith(API_OTA_SUFFIX) else "api"


def service_party(settings: ApiSettings, username: str, password: str) -> BrokerParty | None:
    """An ingest worker or an API connection with its right password; else None."""
    for identity in ingest_identities(settings):
        if username == identity.username:
            if _same(password, identity.password):
                return BrokerParty("ingest", username, identity.client_id)
            return None
    if username.startswith(API_PREFIX) and settings.mqtt_password is not None:
        key = settings.mqtt_password.get_secret_value()
        if _same(password, derive_mqtt_password(key, username, 1)):
            return BrokerParty(_api_party(username), username, username)
    return None


async def authenticate(
    settings: ApiSettings,
    redis: Redis,
    *,
    username: str,
    password: str,
    client_id: str | None,
) -> BrokerParty | None:
    """The party these credentials belong to, or None (refused).

    `client_id` None: the broker did not say (RabbitMQ's AMQP logins); the topic and
    queue checks bind the client id later (api/broker_auth.py)."""
    if DEVICE_USERNAME.fullmatch(username):
        version = await _device_version(redis, username)
        if version is None or not _same(password, device_password(settings, username, version)):
            party = None
        else:
            party = BrokerParty("device", username, username)
    else:
        party = service_party(settings, username, password)
    if party is None or (client_id is not None and client_id != party.client_id):
        return None
    return party


async def party_of(settings: ApiSettings, redis: Redis, username: str) -> BrokerParty | None:
    """An already authenticated username's party (authorisation requests carry no
    password): a device that still exists, a configured ingest worker, an API name."""
    if DEVICE_USERNAME.fullmatch(username):
        if not await _device_exists(redis, username):
            return None
        return BrokerParty("device", username, username)
    for identity in ingest_identities(settings):
        if username == identity.username:
            return BrokerParty("ingest", username, identity.client_id)
    if username.startswith(API_PREFIX) and settings.mqtt_password is not None:
        return BrokerParty(_api_party(username), username, username)
    return None
