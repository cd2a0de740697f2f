"""What a deleted device leaves behind in the alerts domain: its rules and its alerts.

Apart from services.alert_rules so that services.devices can call it without an
import cycle (the rules service looks devices up through services.devices).
"""

from __future__ import annotations

from beanie import PydanticObjectId

from models.alerts import Alert, AlertRule


async def delete_device_alerts(device_id: PydanticObjectId | None) -> None:
    """Remove every rule and every alert of a device (called once the device is gone).

    The workers learn of it from the device-deleted announcement, which makes them
    reload the device's rules (now none)."""
    await AlertRule.get_pymongo_collection().delete_many({"device_id": device_id})
    await Alert.get_pymongo_collection().delete_many({"device_id": device_id})
