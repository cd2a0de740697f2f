"""The simulated device's commands (contract/devices.md): each command on
devices/{id}/commands/{commandId} is answered on .../result.

- `reboot`: ok (the simulator does not really restart);
- `setInterval` {"seconds": n}: the device's telemetry interval becomes n seconds; ok;
- anything else: ok false, "unknown command".
"""

from __future__ import annotations

from typing import Any, Protocol

MIN_INTERVAL_SECONDS = 0.1
MAX_INTERVAL_SECONDS = 3600.0


class Configurable(Protocol):
    interval: float


def answer(device: Configurable, command: Any) -> dict[str, Any]:
    """The device's answer to one decoded command."""
    name = command.get("name") if isinstance(command, dict) else None
    params = command.get("params") if isinstance(command, dict) else None
    if name == "reboot":
        return {"ok": True, "result": {"rebooted": True}}
    if name == "setInterval":
        seconds = params.get("seconds") if isinstance(params, dict) else None
        if (
            isinstance(seconds, int | float)
            and not isinstance(seconds, bool)
            and MIN_INTERVAL_SECONDS <= seconds <= MAX_INTERVAL_SECONDS
        ):
            device.interval = float(seconds)
            return {"ok": True, "result": {"interval": device.interval}}
        return {
            "ok": False,
            "error": f'setInterval needs params {{"seconds": n}}, '
            f"{MIN_INTERVAL_SECONDS} <= n <= {MAX_INTERVAL_SECONDS:g}",
        }
    return {"ok": False, "error": f"unknown command {name!r}"}
