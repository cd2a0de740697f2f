"""Make the broker's identities match MongoDB: at API start-up, on reconnect, and by CLI.

Devices in MongoDB get a client with their current (derived) password, exactly
their own role and their id bound as client id; broker clients that look like
devices but have no Device go away; the ingest workers' identities and this API
process's own get the same treatment; nothing is received unless a role allows it.
Other clients (the bootstrap admin, operators' tools) are left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId

from core.dynsec import DynsecError
from core.settings import ApiSettings
from models.devices import Device
from services.broker_identities import (
    API_OTA_ROLE,
    API_ROLE,
    DENY_RECEIVE,
    DEVICE_ROLE_PREFIX,
    DEVICE_USERNAME,
    INGEST_ROLE,
    Acl,
    DynsecCommands,
    ServiceIdentity,
    api_acls,
    api_identities,
    api_ota_acls,
    create_client,
    create_role,
    device_acls,
    device_password,
    device_role,
    ingest_acls,
    ingest_identities,
    marker,
    set_password,
)

logger = logging.getLogger(__name__)

COMMANDS_PER_MESSAGE = 100
# createDevice provisions the broker before it stores the Device: a young client
# without a Device is probably being created right now, not an orphan.
ORPHAN_GRACE = timedelta(minutes=1)

type Command = dict[str, Any]


@dataclass(slots=True)
class ReconcileReport:
    """What one reconcile changed, by kind."""

    devices_created: int = 0
    devices_repaired: int = 0
    devices_removed: int = 0
    roles_fixed: int = 0
    services_fixed: int = 0

    @property
    def changed(self) -> bool:
        return any(
            (
                self.devices_created,
                self.devices_repaired,
                self.devices_removed,
                self.roles_fixed,
                self.services_fixed,
            )
        )


def _role_commands(rolename: str, wanted: frozenset[Acl], roles: dict[str, Any]) -> list[Command]:
    """Create the role, or make its ACLs exactly `wanted` (allowed, priority 0)."""
    if rolename not in roles:
        return [create_role(rolename, wanted)]
    present = {
        (a["acltype"], a["topic"], bool(a.get("allow")), int(a.get("priority", 0)))
        for a in roles[rolename].get("acls", [])
    }
    desired = {(a.acltype, a.topic, True, 0) for a in wanted}
    extra = [Acl(t, topic).command(rolename, "removeRoleACL") for t, topic, *_ in present - desired]
    for command in extra:
        del command["allow"]
    missing = [Acl(t, topic).command(rolename) for t, topic, *_ in sorted(desired - present)]
    return extra + missing


def _client_commands(
    settings: ApiSettings,
    client: dict[str, Any] | None,
    username: str,
    password: str,
    rolename: str,
    *,
    client_id: str = "",
) -> tuple[list[Command], bool]:
    """Commands that give `username` this password, exactly this role and its bound client
    id (`client_id`, by default the username); (commands, created)."""
    client_id = client_id or username
    if client is None:
        return [create_client(settings, username, password, rolename, client_id=client_id)], True
    commands: list[Command] = []
    if client.get("clientid") != client_id:
        # Created before client ids were bound (or tampered with); this closes its session.
        commands.append({"command": "modifyClient", "username": username, "clientid": client_id})
    if client.get("textdescription") != marker(settings, password):
        commands += set_password(settings, username, password)
    roles = {r["rolename"] for r in client.get("roles", [])}
    if rolename not in roles:
        commands.append({"command": "addClientRole", "username": username, "rolename": rolename})
    commands += [
        {"command": "removeClientRole", "username": username, "rolename": r}
        for r in sorted(roles - {rolename})
    ]
    commands += [
        {"command": "removeGroupClient", "groupname": g["groupname"], "username": username}
        for g in client.get("groups", [])
    ]
    if client.get("disabled"):
        commands.append({"command": "enableClient", "username": username})
    return commands, False


def _old_enough(device_id: str, now: datetime, grace: timedelta) -> bool:
    return now - ObjectId(device_id).generation_time >= grace


async def _device_versions() -> dict[str, int]:
    collection = Device.get_pymongo_collection()
    return {
        str(doc["_id"]): int(doc.get("credentials_version", 1))
        async for doc in collection.find({}, {"credentials_version": 1})
    }


async def _listing(broker: DynsecCommands) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """Clients and roles by name, and whether clients receive what no role allows."""
    clients, roles, default = await broker.execute(
        {"command": "listClients", "verbose": True, "count": -1},
        {"command": "listRoles", "verbose": True, "count": -1},
        {"command": "getDefaultACLAccess"},
    )
    receive = {a["acltype"]: a["allow"] for a in default["data"]["acls"]}
    return (
        {c["username"]: c for c in clients["data"]["clients"]},
        {r["rolename"]: r for r in roles["data"]["roles"]},
        bool(receive.get("publishClientReceive", True)),
    )


def _done_by_another(command: Command, error: str) -> bool:
    """Another reconciler (a second API starting at the same time) got there first.

    Every process derives the same passwords and roles from MongoDB, so its result
    is the one this command wanted."""
    name, error = str(command.get("command")), error.lower()
    if name.startswith(("create", "add")):
        return "already" in error
    if name.startswith(("delete", "remove")):
        return "not found" in error
    return False


async def _execute_racing(broker: DynsecCommands, commands: list[Command]) -> None:
    """Run `commands`; refusals that mean "already done" pass, any other raises."""
    responses = await broker.execute_tolerant(*commands)
    for command, response in zip(commands, responses, strict=True):
        error = response.get("error")
        if error and not _done_by_another(command, str(error)):
            raise DynsecError(str(command.get("command")), str(error))


def _service_commands(
    settings: ApiSettings,
    clients: dict[str, Any],
    roles: dict[str, Any],
    *,
    api: bool,
) -> list[Command]:
    """The service roles, the ingest workers' identities and (with `api`) this API's own."""
    identities: list[ServiceIdentity] = list(ingest_identities(settings))
    if api and (own := api_identities(settings)) is not None:
        identities += own
    commands = _role_commands(API_ROLE, api_acls(), roles)
    commands += _role_commands(API_OTA_ROLE, api_ota_acls(), roles)
    commands += _role_commands(INGEST_ROLE, ingest_acls(settings), roles)
    for identity in identities:
        client = clients.get(identity.username)
        commands += _client_commands(
            settings,
            client,
            identity.username,
            identity.password,
            identity.rolename,
            client_id=identity.client_id,
        )[0]
    # The one identity all workers shared before each had its own bound client id.
    shared = settings.mqtt_ingest_username
    if shared in clients and shared != settings.mqtt_username:
        commands.append({"command": "deleteClient", "username": shared})
    return commands


async def reconcile(
    broker: DynsecCommands,
    settings: ApiSettings,
    *,
    api: bool = False,
    orphan_grace: timedelta = ORPHAN_GRACE,
) -> ReconcileReport:
    """Make the broker's clients and roles match the devices in MongoDB.

    With `api`, also this API process's own identities (services.broker_identities
    .api_identities); the CLI leaves those to the processes they belong to."""
    clients, roles, receive_by_default = await _listing(broker)
    devices = await _device_versions()
    report = ReconcileReport()
    commands: list[Command] = []

    service = _service_commands(settings, clients, roles, api=api)
    report.services_fixed = len(service)
    commands += service

    for device_id, version in devices.items():
        role = device_role(device_id)
        role_fix = _role_commands(role, device_acls(device_id), roles)
        password = device_password(settings, device_id, version)
        client_fix, created = _client_commands(
            settings, clients.get(device_id), device_id, password, role
        )
        report.roles_fixed += bool(role_fix) and role in roles
        report.devices_created += created
        report.devices_repaired += bool(client_fix) and not created
        commands += role_fix + client_fix

    now = datetime.now(UTC)
    protected = {settings.mqtt_username}
    for username in clients:
        if (
            DEVICE_USERNAME.fullmatch(username)
            and username not in devices
            and username not in protected
            and _old_enough(username, now, orphan_grace)
        ):
            commands.append({"command": "deleteClient", "username": username})
            report.devices_removed += 1
    for rolename in roles:
        owner = rolename.removeprefix(DEVICE_ROLE_PREFIX)
        if (
            rolename.startswith(DEVICE_ROLE_PREFIX)
            and DEVICE_USERNAME.fullmatch(owner)
            and owner not in devices
            and _old_enough(owner, now, orphan_grace)
        ):
            commands.append({"command": "deleteRole", "rolename": rolename})

    if receive_by_default:
        # Last: only once every role allows what its clients must receive.
        commands.append(DENY_RECEIVE)
        report.services_fixed += 1

    for start in range(0, len(commands), COMMANDS_PER_MESSAGE):
        await _execute_racing(broker, commands[start : start + COMMANDS_PER_MESSAGE])
    if report.changed:
        logger.info("broker reconciled: %s", report)
    return report
