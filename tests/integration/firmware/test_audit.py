"""Starting and cancelling a rollout leave audit entries (docs/access.md#audit-log)."""

from __future__ import annotations

from tests.client import Api
from tests.contract import op
from tests.factories import admin_and_user, create_device
from tests.integration.firmware.helpers import start, uploaded


async def test_audit_firmware_rollout_start_cancel_recorded(api: Api) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    firmware = await uploaded(api, admin, b"\x00" * 2048, version="2.1.0")
    update = await start(api, admin, firmware["id"], [device.id], devicesPerMinute=1)
    await api.execute(op("CancelFirmwareUpdate"), {"id": update["id"]}, token=admin.access_token)

    result = await api.execute(op("AuditLog"), {"first": 10}, token=admin.access_token)
    nodes = [edge["node"] for edge in result.data["auditLog"]["edges"]]

    cancel, rollout = [n for n in nodes if n["action"].startswith("firmware.")]
    assert (cancel["action"], rollout["action"]) == ("firmware.cancel", "firmware.rollout")
    assert cancel["targetId"] == rollout["targetId"] == update["id"]
    assert rollout["actor"]["id"] == admin.user_id
    assert rollout["details"] == {
        "firmwareId": firmware["id"],
        "deviceType": "esp32",
        "version": "2.1.0",
        "deviceCount": 1,
    }
    assert cancel["details"] == {"firmwareVersion": "2.1.0"}
    # A rollout is the ADMIN's; the device's owner is not its reader.
    mine = await api.execute(op("AuditLog"), token=user.access_token)
    assert [e["node"]["action"] for e in mine.data["auditLog"]["edges"]] == ["device.create"]
