"""The simulator's devices answer commands (`python -m simulator`), against the real stack."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.worker import IngestWorker
from simulator.commands import answer
from tests.brokers import ManagedBroker
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD, CreatedDevice, Session, register
from tests.integration.device_commands.conftest import commands, device_status, eventually, send
from tests.integration.firmware.helpers import as_device
from tests.integration.firmware.simulator import SimulatorProcess


class Device:
    interval = 1.0


def test_answer_reboot_set_interval_unknown() -> None:
    device = Device()
    assert answer(device, {"name": "reboot", "params": None}) == {
        "ok": True,
        "result": {"rebooted": True},
    }
    assert answer(device, {"name": "setInterval", "params": {"seconds": 2.5}}) == {
        "ok": True,
        "result": {"interval": 2.5},
    }
    assert device.interval == 2.5
    for bad in ({"seconds": 0}, {"seconds": "5"}, {"seconds": True}, None, [5]):
        reply = answer(device, {"name": "setInterval", "params": bad})
        assert reply["ok"] is False and "seconds" in reply["error"]
    assert device.interval == 2.5
    assert answer(device, {"name": "selfDestruct"}) == {
        "ok": False,
        "error": "unknown command 'selfDestruct'",
    }
    assert answer(device, None)["ok"] is False


async def finished(api: Api, user: Session, device_id: str, command_id: str) -> dict[str, Any]:
    async def node() -> dict[str, Any]:
        return next(c for c in await commands(api, user, device_id) if c["id"] == command_id)

    return await eventually(node, lambda c: c["state"] not in ("QUEUED", "SENT"))


async def test_simulator_answers_commands_and_changes_interval(
    api: Api, api_server: str, managed_broker: ManagedBroker, command_worker: IngestWorker
) -> None:
    user = await register(api)
    arguments = [
        "--devices", "1", "--rate", "1", "--duration", "0", "--api", api_server,
        "--mqtt-host", managed_broker.host, "--mqtt-port", str(managed_broker.port),
        "--email", user.email, "--password", PASSWORD, "--report-every", "600",
    ]  # fmt: skip
    async with SimulatorProcess(*arguments) as simulator:
        await simulator.wait_for(lambda lines: any("simulating" in line for line in lines))
        listed = await api.execute(op("Devices"), {"first": 10}, token=user.access_token)
        [edge] = listed.data["devices"]["edges"]
        device_id = edge["node"]["id"]
        await eventually(lambda: device_status(device_id), lambda s: s == "ONLINE")

        reboot = await send(api, user, device_id, "reboot")
        done = await finished(api, user, device_id, reboot["id"])
        assert (done["state"], done["result"]) == ("SUCCEEDED", {"rebooted": True})

        faster = await send(api, user, device_id, "setInterval", params={"seconds": 0.2})
        done = await finished(api, user, device_id, faster["id"])
        assert (done["state"], done["result"]) == ("SUCCEEDED", {"interval": 0.2})
        since = datetime.fromisoformat(done["completedAt"])

        async def readings_since() -> int:
            result = await api.execute(
                op("Readings"),
                {"deviceId": device_id, "from": since.isoformat(), "first": 100},
                token=user.access_token,
            )
            return len(result.data["readings"]["edges"])

        # One reading every 0.2 s now, where it was one a second.
        await eventually(readings_since, lambda n: n >= 8, timeout=5)

        unknown = await send(api, user, device_id, "selfDestruct")
        done = await finished(api, user, device_id, unknown["id"])
        assert (done["state"], done["error"]) == ("FAILED", "unknown command 'selfDestruct'")
    # Its retained status would greet later tests' workers: cleared as the device itself.
    rotated = await api.execute(
        op("RotateDeviceCredentials"), {"id": device_id}, token=user.access_token
    )
    credentials = rotated.data["rotateDeviceCredentials"]
    device = CreatedDevice(
        device_id, credentials["mqttUsername"], credentials["mqttPassword"], "", {}
    )
    async with as_device(managed_broker, device) as mqtt:
        await mqtt.publish(f"devices/{device_id}/status", b"", qos=1, retain=True)
