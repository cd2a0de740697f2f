"""Stored device log lines: pages of one device's lines, newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Final

from models.accounts import User
from models.device_logs import DeviceLog
from services.devices import get_device
from services.keyset import TimePage, time_page

_CURSOR_PREFIX: Final = "l:"

type DeviceLogPage = TimePage[DeviceLog]


async def list_device_logs(
    viewer: User,
    device_id: str,
    *,
    start: datetime | None,
    end: datetime | None,
    first: int,
    after: str | None,
) -> DeviceLogPage:
    """Log lines of a device the viewer may see (NotFound otherwise), newest first, in
    [start, end)."""
    device = await get_device(viewer, device_id)
    return await time_page(
        DeviceLog,
        {"device_id": device.id},
        prefix=_CURSOR_PREFIX,
        start=start,
        end=end,
        first=first,
        after=after,
    )
