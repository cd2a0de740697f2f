"""MongoDB is the source of truth: a broker that lost its state is repaired from it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from bson import ObjectId

from core.dynsec import connect_dynsec
from core.settings import Settings
from services.broker_reconcile import reconcile
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import CreatedDevice, create_device, register
from tests.integration.broker.conftest import login_refused
from tests.net import ROOT
from tests.processes import api_process, settings_environment


def on(settings: Settings, broker: ManagedBroker) -> dict[str, str]:
    return {"MQTT_PORT": str(broker.port), "MQTT_PASSWORD": broker.admin_password}


def run_cli(settings: Settings, broker: ManagedBroker) -> subprocess.CompletedProcess[str]:
    env = settings_environment(settings, **on(settings, broker))
    return subprocess.run(
        [sys.executable, "-m", "api.broker", "reconcile"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def logins(broker: ManagedBroker, devices: dict[str, tuple[str, str]]) -> dict[str, bool]:
    """Which of these (username, password) pairs the broker accepts, by label."""
    return {
        label: not await login_refused(broker, username, password)
        for label, (username, password) in devices.items()
    }


async def test_reconcile_cli_restores_every_device_after_state_lost(
    api: Api, settings: Settings, private_broker: ManagedBroker
) -> None:
    session = await register(api)
    kept = await create_device(api, session, name="kept")
    rotated = await create_device(api, session, name="rotated")
    deleted = await create_device(api, session, name="deleted")
    result = await api.execute(
        op("RotateDeviceCredentials"), {"id": rotated.id}, token=session.access_token
    )
    new_password = result.data["rotateDeviceCredentials"]["mqttPassword"]
    await api.execute(op("DeleteDevice"), {"id": deleted.id}, token=session.access_token)
    pairs = {
        "kept": (kept.mqtt_username, kept.mqtt_password),
        "rotated-new": (rotated.mqtt_username, new_password),
        "rotated-old": (rotated.mqtt_username, rotated.mqtt_password),
        "deleted": (deleted.mqtt_username, deleted.mqtt_password),
    }
    everyone_out = dict.fromkeys(pairs, False)
    restored = {"kept": True, "rotated-new": True, "rotated-old": False, "deleted": False}

    # The private broker never saw these devices: nobody gets in until reconcile.
    assert await logins(private_broker, pairs) == everyone_out
    first = run_cli(settings, private_broker)
    assert first.returncode == 0, first.stderr
    assert "2 devices created" in first.stdout, first.stdout
    assert await logins(private_broker, pairs) == restored

    # Its dynsec state lost (the admin is bootstrapped again, nothing else).
    private_broker.restart(forget_dynsec=True)
    assert await logins(private_broker, pairs) == everyone_out
    second = run_cli(settings, private_broker)
    assert second.returncode == 0, second.stderr
    assert await logins(private_broker, pairs) == restored

    # In sync: a third run changes nothing.
    third = run_cli(settings, private_broker)
    assert "0 devices created, 0 repaired, 0 removed, 0 roles fixed, 0 service" in third.stdout


async def test_reconcile_cli_broker_unreachable_exits_nonzero(
    settings: Settings, private_broker: ManagedBroker
) -> None:
    private_broker.stop()
    result = run_cli(settings, private_broker)
    assert result.returncode == 1
    assert "reconcile failed" in result.stderr


async def test_reconcile_removes_orphans_repairs_tampering_keeps_others(
    api: Api, settings: Settings, private_broker: ManagedBroker
) -> None:
    session = await register(api)
    device = await create_device(api, session)
    old_orphan = str(ObjectId.from_datetime(datetime.now(UTC) - timedelta(hours=1)))
    young_orphan = str(ObjectId())
    # The first reconcile grants the admin its API role, which closes that connection.
    assert run_cli(settings, private_broker).returncode == 0
    async with connect_dynsec(
        private_broker.host,
        private_broker.port,
        username=private_broker.admin_username,
        password=private_broker.admin_password,
    ) as dynsec:
        await dynsec.execute(
            *[
                {"command": "createClient", "username": name, "password": "p" * 16}
                for name in (old_orphan, young_orphan, "operator-tool")
            ],
            # Drift: a device granted everything; an old password, as from a stale
            # backup (with its marker: the broker cannot show the password itself).
            {"command": "addRoleACL", "rolename": f"device-{device.id}",
             "acltype": "publishClientSend", "topic": "#", "allow": True},
            {"command": "setClientPassword", "username": device.id, "password": "stolen"},
            {"command": "modifyClient", "username": device.id, "textdescription": "old"},
        )  # fmt: skip
        report = await reconcile(dynsec, settings)
        (listing,) = await dynsec.execute({"command": "listClients", "count": -1})
        (role,) = await dynsec.execute({"command": "getRole", "rolename": f"device-{device.id}"})
    usernames = set(listing["data"]["clients"])
    assert (report.devices_removed, report.devices_repaired, report.roles_fixed) == (1, 1, 1)
    assert old_orphan not in usernames
    # Too young to be an orphan (createDevice provisions before it stores), and not a device.
    assert {young_orphan, "operator-tool", private_broker.admin_username} <= usernames
    assert "#" not in {acl["topic"] for acl in role["data"]["role"]["acls"]}
    assert not await login_refused(private_broker, device.mqtt_username, device.mqtt_password)
    assert await login_refused(private_broker, device.mqtt_username, "stolen")


async def test_reconcile_twice_at_once_both_succeed(
    api: Api, settings: Settings, private_broker: ManagedBroker
) -> None:
    # Two API processes starting together: both list an empty broker, both create.
    session = await register(api)
    devices = [await create_device(api, session, name=f"d{i}") for i in range(3)]
    # The first reconcile grants the admin its API role (a later grant would kick both).
    assert run_cli(settings, private_broker).returncode == 0
    async with connect_dynsec(
        private_broker.host,
        private_broker.port,
        username=private_broker.admin_username,
        password=private_broker.admin_password,
    ) as dynsec:
        await dynsec.execute(
            *[{"command": "deleteClient", "username": d.id} for d in devices],
            *[{"command": "deleteRole", "rolename": f"device-{d.id}"} for d in devices],
        )
    connections = [
        connect_dynsec(
            private_broker.host,
            private_broker.port,
            username=private_broker.admin_username,
            password=private_broker.admin_password,
        )
        for _ in range(2)
    ]
    async with connections[0] as first, connections[1] as second:
        reports = await asyncio.gather(reconcile(first, settings), reconcile(second, settings))
    assert [r.devices_created for r in reports] == [3, 3]
    pairs = {d.id: (d.mqtt_username, d.mqtt_password) for d in devices}
    assert await logins(private_broker, pairs) == dict.fromkeys(pairs, True)


async def test_api_repairs_broker_after_restart_without_manual_work(
    api: Api, settings: Settings, private_broker: ManagedBroker
) -> None:
    session = await register(api)
    device: CreatedDevice = await create_device(api, session)
    async with api_process(settings, **on(settings, private_broker)):
        assert not await login_refused(private_broker, device.mqtt_username, device.mqtt_password)
        private_broker.restart(forget_dynsec=True)
        for _ in range(100):
            if not await login_refused(private_broker, device.mqtt_username, device.mqtt_password):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the API did not reconcile the restarted broker in 10 s")
