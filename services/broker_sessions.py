"""Close a device's open connections at a broker that keeps them after a rotation or
deletion (RabbitMQ: its management API). Mosquitto's dynsec closes them itself.

Best effort, after the credential change is in force: new logins are refused at once
by services.broker_auth whatever happens here; a failure is logged."""

from __future__ import annotations

import logging
from typing import Final
from urllib.parse import quote

import httpx

from core.settings import ApiSettings

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS: Final = 5.0


async def close_device_connections(settings: ApiSettings, device_id: str, reason: str) -> bool:
    """Close every connection of the device's username, cluster-wide; True when done.

    RabbitMQ 3.10: DELETE /api/connections/username/<name> (an administrator's call)."""
    base = settings.broker_management_url.rstrip("/")
    password = settings.broker_management_password
    if not base or password is None:
        return False
    url = f"{base}/api/connections/username/{quote(device_id, safe='')}"
    auth = (settings.broker_management_username, password.get_secret_value())
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS, auth=auth) as client:
            response = await client.delete(url, headers={"X-Reason": reason})
    except httpx.HTTPError as err:
        logger.warning("device %s: broker connections not closed (%s)", device_id, err)
        return False
    if response.status_code not in (200, 204):
        logger.warning(
            "device %s: broker connections not closed (HTTP %s)", device_id, response.status_code
        )
        return False
    return True
