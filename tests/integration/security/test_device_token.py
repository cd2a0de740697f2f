"""verifyDeviceToken answers anyone holding a device token (a gateway), as the contract says."""

from __future__ import annotations

from tests.client import Api
from tests.contract import op
from tests.factories import create_device, register


async def test_verify_device_token_without_user_token_valid(api: Api) -> None:
    device = await create_device(api, await register(api))

    result = await api.execute(op("VerifyDeviceToken"), {"token": device.token})

    answer = result.data["verifyDeviceToken"]
    assert (answer["valid"], answer["deviceId"]) == (True, device.id)
    assert answer["expiresAt"]


async def test_verify_device_token_without_user_token_bad_token_invalid(api: Api) -> None:
    result = await api.execute(op("VerifyDeviceToken"), {"token": "not-a-device-token"})

    assert result.data["verifyDeviceToken"] == {
        "valid": False,
        "deviceId": None,
        "expiresAt": None,
    }
