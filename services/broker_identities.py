"""Who may do what at the broker: device and service identities in Mosquitto dynsec.

The broker enforces these rules: every identity connects only with its own username
as client id (Mosquitto hands a session, queued messages included, to whoever uses
its client id), speaks only on its own topics, and receives only what its role
allows (the default for publishClientReceive is deny). MongoDB stays the source of
truth, and services.broker_reconcile makes the broker match it.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from core.dynsec import BrokerUnavailable, DynsecError
from core.settings import ApiSettings
from core.topics import granted
from services.credentials import derive_mqtt_password, secret_fingerprint
from services.errors import Unavailable

logger = logging.getLogger(__name__)

API_ROLE = "iot-api"
API_OTA_ROLE = "iot-api-ota"
INGEST_ROLE = "iot-ingest"
API_PREFIX = "iot-api-"
# Worker n's client id (what every worker connected with before ids were bound).
INGEST_CLIENT_PREFIX = "ingest-"
DEVICE_ROLE_PREFIX = "device-"
# Device usernames are their ObjectId: anything else on the broker is not a device.
DEVICE_USERNAME = re.compile(r"[0-9a-f]{24}")
MARKER_PREFIX = "iotplatform secret "

# Every device topic an identity may use comes from core.topics: devices publish the
# uplinks and receive the downlinks, the ingest worker receives every uplink (consumed or
# not) and republishes twin documents, the API sends commands and twin documents on its
# dynsec connection and OTA offers on its own.
INGEST_TOPICS = tuple(kind.pattern for kind in granted(receiver="ingest"))
INGEST_PUBLISH = tuple(kind.pattern for kind in granted(publisher="ingest"))
API_PUBLISH = tuple(kind.pattern for kind in granted(publisher="api"))
API_OTA_PUBLISH = tuple(kind.pattern for kind in granted(publisher="api_ota"))
# The API's dynsec connection: commands out, responses in (as `mosquitto_ctrl dynsec init`'s
# admin role has them, without that role's read access to every topic).
DYNSEC_TOPICS = "$CONTROL/dynamic-security/#"
# Anything a role does not allow a client to receive is not sent to it, even where a
# (misconfigured) subscription matches.
DENY_RECEIVE = {
    "command": "setDefaultACLAccess",
    "acls": [{"acltype": "publishClientReceive", "allow": False}],
}


class DynsecCommands(Protocol):
    """An admin connection: core.dynsec.DynamicSecurity or core.broker.BrokerAdmin."""

    async def execute(self, *commands: dict[str, Any]) -> list[dict[str, Any]]: ...

    async def execute_tolerant(self, *commands: dict[str, Any]) -> list[dict[str, Any]]: ...

    # Messages to devices (twin documents), as the connection's identity.
    async def publish(self, topic: str, payload: bytes, *, qos: int, retain: bool) -> None: ...


@dataclass(frozen=True, slots=True, order=True)
class Acl:
    acltype: str
    topic: str

    def command(self, rolename: str, verb: str = "addRoleACL") -> dict[str, Any]:
        return {
            "command": verb,
            "rolename": rolename,
            "acltype": self.acltype,
            "topic": self.topic,
            "allow": True,
        }


def device_role(device_id: str) -> str:
    return f"{DEVICE_ROLE_PREFIX}{device_id}"


def device_acls(device_id: str) -> frozenset[Acl]:
    """Publish only its own uplink topics, subscribe to and receive only its own downlink."""
    downlink = [kind.topic(device_id) for kind in granted(receiver="device")]
    return frozenset(
        [Acl("publishClientSend", kind.topic(device_id)) for kind in granted(publisher="device")]
        + [Acl("subscribePattern", topic) for topic in downlink]
        + [Acl("publishClientReceive", topic) for topic in downlink]
    )


def ingest_acls(settings: ApiSettings) -> frozenset[Acl]:
    """Subscribe to and receive device uplinks, shared in the worker group or alone;
    publish what it answers devices with (their twin documents, on twin/get)."""
    # Mosquitto checks a shared subscription against its full `$share/...` filter, and
    # what it delivers against the message's own topic.
    filters = list(INGEST_TOPICS)
    if group := settings.ingest_share_group:
        filters += [f"$share/{group}/{topic}" for topic in INGEST_TOPICS]
    return frozenset(
        [Acl("subscribePattern", topic) for topic in filters]
        + [Acl("publishClientReceive", topic) for topic in INGEST_TOPICS]
        + [Acl("publishClientSend", topic) for topic in INGEST_PUBLISH]
    )


def api_acls() -> frozenset[Acl]:
    """The API's dynsec connection: control commands and their answers, device commands."""
    return frozenset(
        [Acl(acltype, DYNSEC_TOPICS) for acltype in ("publishClientSend", "subscribePattern")]
        + [Acl("publishClientReceive", DYNSEC_TOPICS)]
        + [Acl("publishClientSend", topic) for topic in API_PUBLISH]
    )


def api_ota_acls() -> frozenset[Acl]:
    """The API's OTA connection: retained offers to devices, nothing received."""
    return frozenset(Acl("publishClientSend", topic) for topic in API_OTA_PUBLISH)


@dataclass(frozen=True, slots=True)
class ServiceIdentity:
    """A platform service's broker client and the one client id it may connect with."""

    username: str
    password: str
    rolename: str
    client_id: str


def ingest_identities(settings: ApiSettings) -> list[ServiceIdentity]:
    """One identity per ingest worker, `<MQTT_INGEST_USERNAME>-<n>`, n = 1..INGEST_WORKERS,
    bound to the client id `ingest-<n>`.

    Every worker needs a client id of its own (its persistent session, its share of the
    group's messages), and a bound client id needs a client of its own. `ingest-<n>` is
    the id worker n connected with before ids were bound, so an upgraded worker resumes
    its session and stores what the broker queued for it. They share the password: they
    hold the same role."""
    if settings.mqtt_ingest_password is None:
        return []
    password = settings.mqtt_ingest_password.get_secret_value()
    prefix = settings.mqtt_ingest_username
    return [
        ServiceIdentity(f"{prefix}-{n}", password, INGEST_ROLE, f"{INGEST_CLIENT_PREFIX}{n}")
        for n in range(1, settings.ingest_workers + 1)
    ]


def api_instance(settings: ApiSettings) -> str:
    """This API process's name at the broker: API_INSTANCE, or else the host name."""
    return settings.api_instance or socket.gethostname()


def api_identities(settings: ApiSettings) -> tuple[ServiceIdentity, ServiceIdentity] | None:
    """This API process's dynsec connection and OTA connection; None without MQTT_PASSWORD.

    Their passwords derive from the bootstrap admin's (MQTT_PASSWORD), so any process
    holding it can create them again on a broker that lost its state."""
    if settings.mqtt_password is None:
        return None
    key = settings.mqtt_password.get_secret_value()
    admin = f"{API_PREFIX}{api_instance(settings)}"
    ota = f"{admin}-ota"
    return (
        ServiceIdentity(admin, derive_mqtt_password(key, admin, 1), API_ROLE, admin),
        ServiceIdentity(ota, derive_mqtt_password(key, ota, 1), API_OTA_ROLE, ota),
    )


def device_password(settings: ApiSettings, device_id: str, version: int) -> str:
    """The device's current MQTT password (see services.credentials)."""
    key = settings.device_credential_key.get_secret_value()
    return derive_mqtt_password(key, device_id, version)


def marker(settings: ApiSettings, password: str) -> str:
    """Stored as the client's textdescription: which password the broker holds."""
    key = settings.device_credential_key.get_secret_value()
    return MARKER_PREFIX + secret_fingerprint(key, password)


def create_role(rolename: str, acls: frozenset[Acl]) -> dict[str, Any]:
    return {
        "command": "createRole",
        "rolename": rolename,
        "acls": [{"acltype": a.acltype, "topic": a.topic, "allow": True} for a in sorted(acls)],
    }


def create_client(
    settings: ApiSettings, username: str, password: str, rolename: str, *, client_id: str = ""
) -> dict[str, Any]:
    """A client that may connect only with `client_id` (by default its username)."""
    return {
        "command": "createClient",
        "username": username,
        "clientid": client_id or username,
        "password": password,
        "textdescription": marker(settings, password),
        "roles": [{"rolename": rolename}],
    }


def set_password(settings: ApiSettings, username: str, password: str) -> list[dict[str, Any]]:
    """New password and its marker; Mosquitto 2.0 disconnects the client's open sessions."""
    return [
        {"command": "setClientPassword", "username": username, "password": password},
        {
            "command": "modifyClient",
            "username": username,
            "textdescription": marker(settings, password),
        },
    ]


@contextmanager
def broker_errors(outcome: str) -> Iterator[None]:
    """Broker failures as a clear Unavailable; `outcome` says what did not happen."""
    try:
        yield
    except (BrokerUnavailable, DynsecError) as err:
        logger.warning("broker: %s (%s)", outcome, err)
        raise Unavailable(f"The MQTT broker is unavailable; {outcome}. Try again.") from err


async def provision_device(
    broker: DynsecCommands, settings: ApiSettings, device_id: str, password: str
) -> None:
    """Create the device's role and client; on a refusal, leave nothing behind."""
    role = device_role(device_id)
    try:
        await broker.execute(
            create_role(role, device_acls(device_id)),
            create_client(settings, device_id, password, role),
        )
    except DynsecError:
        await broker.execute_tolerant(
            {"command": "deleteClient", "username": device_id},
            {"command": "deleteRole", "rolename": role},
        )
        raise


async def set_device_password(
    broker: DynsecCommands, settings: ApiSettings, device_id: str, password: str
) -> None:
    """Replace the device's password; a session opened with the old one is closed."""
    await broker.execute(*set_password(settings, device_id, password))


async def remove_device(broker: DynsecCommands, device_id: str) -> None:
    """Delete the device's client (its sessions are closed) and role; absent is fine."""
    responses = await broker.execute_tolerant(
        {"command": "deleteClient", "username": device_id},
        {"command": "deleteRole", "rolename": device_role(device_id)},
    )
    for response in responses:
        error = response.get("error")
        if error and "not found" not in str(error).lower():
            raise DynsecError(str(response.get("command")), str(error))
