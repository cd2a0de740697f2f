"""uploadFirmware (multipart), firmwares, firmwareSigningKey, deleteFirmware."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from urllib.parse import urlsplit

import pytest
from starlette.requests import Request
from starlette.responses import Response

from core.settings import Settings
from firmware import storage
from firmware.signing import verify_digest
from firmware.upload_guard import guard_multipart
from models.firmware import Firmware
from tests.client import Api
from tests.contract import op
from tests.factories import admin_and_user, create_device
from tests.integration.firmware.helpers import PREFLIGHT, start, upload, uploaded


async def stored_counts() -> tuple[int, int, int]:
    """Firmware documents, GridFS files, GridFS chunks."""
    db = storage.database()
    return (
        await Firmware.get_pymongo_collection().count_documents({}),
        await db[f"{storage.BUCKET}.files"].count_documents({}),
        await db[f"{storage.BUCKET}.chunks"].count_documents({}),
    )


async def test_upload_firmware_stores_signed_image_and_lists_it(api: Api) -> None:
    admin, user = await admin_and_user(api)
    image = os.urandom(600_000)  # three GridFS chunks
    firmware = await uploaded(api, admin, image, version="1.2.3", device_type="esp32")
    digest = hashlib.sha256(image).digest()
    assert firmware["version"] == "1.2.3"
    assert firmware["deviceType"] == "esp32"
    assert firmware["size"] == len(image)
    assert firmware["sha256"] == digest.hex()
    key = await api.execute(op("FirmwareSigningKey"), token=user.access_token)
    public_key = key.data["firmwareSigningKey"]
    assert len(base64.b64decode(public_key)) == 32
    assert verify_digest(public_key, digest, firmware["signature"])
    assert not verify_digest(public_key, hashlib.sha256(b"other").digest(), firmware["signature"])
    # Spec-compliant GridFS: PyMongo's own bucket reads the bytes back.
    document = await Firmware.get(firmware["id"])
    assert document is not None
    stream = await storage.bucket().open_download_stream(document.file_id)
    assert await stream.read() == image
    listed = await api.execute(op("Firmwares"), {"deviceType": "esp32"}, token=admin.access_token)
    assert listed.data["firmwares"] == [firmware]
    other = await api.execute(op("Firmwares"), {"deviceType": "rp2040"}, token=admin.access_token)
    assert other.data["firmwares"] == []


async def test_upload_firmware_oversized_is_bad_input_and_stores_nothing(
    api: Api, settings: Settings
) -> None:
    admin, _ = await admin_and_user(api)
    result = await upload(api, admin, b"\0" * (settings.firmware_max_bytes + 1))
    assert result.code == "BAD_USER_INPUT"
    assert "file" in result.message
    assert await stored_counts() == (0, 0, 0)


async def test_upload_firmware_far_oversized_body_is_refused_with_413(
    api_server: str, settings: Settings
) -> None:
    # Declared too large: answered before a byte of the body is read (raw HTTP, since
    # a client still sending its body may not see an early answer).
    url = urlsplit(api_server)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    length = settings.firmware_max_bytes + 2 * 1024 * 1024
    writer.write(
        (
            "POST /graphql HTTP/1.1\r\nHost: test\r\nGraphQL-Require-Preflight: 1\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    async with asyncio.timeout(10):
        status_line = await reader.readline()
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    assert await stored_counts() == (0, 0, 0)


async def test_guard_multipart_cuts_off_undeclared_body_over_limit() -> None:
    # Without Content-Length (chunked), the body is counted as it arrives.
    messages = [{"type": "http.request", "body": b"x" * 600, "more_body": True}] * 3
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    class View:
        async def run(self, request: Request) -> Response:
            await request.body()  # reads past the limit
            raise AssertionError("the body should have been cut off")

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/graphql",
        "headers": [
            (b"content-type", b"multipart/form-data; boundary=x"),
            (b"graphql-require-preflight", b"1"),
        ],
    }
    await guard_multipart(
        scope,
        receive,
        send,
        view=View(),
        other=None,
        max_body_bytes=1000,  # type: ignore[arg-type]
    )
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 413


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "01.2.3", "1.2.3-", "latest", ""])
async def test_upload_firmware_non_semver_is_bad_input(api: Api, version: str) -> None:
    admin, _ = await admin_and_user(api)
    result = await upload(api, admin, b"image", version=version)
    assert result.code == "BAD_USER_INPUT"
    assert "version" in result.message
    assert await stored_counts() == (0, 0, 0)


async def test_upload_firmware_duplicate_version_is_conflict(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    first = await uploaded(api, admin, b"first image", version="2.0.0-rc.1+build.5")
    result = await upload(api, admin, b"second image", version="2.0.0-rc.1+build.5")
    assert result.code == "CONFLICT"
    assert await stored_counts() == (1, 1, 1)
    # The same version for another device type is another image.
    await uploaded(api, admin, b"second image", version="2.0.0-rc.1+build.5", device_type="rp2040")
    listed = await api.execute(op("Firmwares"), token=admin.access_token)
    assert first in listed.data["firmwares"]
    assert len(listed.data["firmwares"]) == 2


async def test_upload_firmware_as_user_is_forbidden(api: Api) -> None:
    _, user = await admin_and_user(api)
    result = await upload(api, user, b"image")
    assert result.code == "FORBIDDEN"
    anonymous = await upload(api, None, b"image")
    assert anonymous.code == "UNAUTHENTICATED"
    assert await stored_counts() == (0, 0, 0)
    listed = await api.execute(op("Firmwares"), token=user.access_token)
    assert listed.code == "FORBIDDEN"


async def test_upload_firmware_without_preflight_header_is_refused(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    result = await upload(api, admin, b"image", headers={})
    assert result.status == 400
    assert "GraphQL-Require-Preflight" in result.body["errors"][0]["message"]
    assert await stored_counts() == (0, 0, 0)


async def test_upload_firmware_empty_or_not_a_file_is_bad_input(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    empty = await upload(api, admin, b"")
    assert empty.code == "BAD_USER_INPUT"
    not_a_file = await api.execute(
        op("UploadFirmware"),
        {"file": "not a file", "version": "1.0.0", "deviceType": "esp32"},
        token=admin.access_token,
        headers=PREFLIGHT,
    )
    assert not_a_file.code == "BAD_USER_INPUT"
    assert await stored_counts() == (0, 0, 0)


async def test_delete_firmware_refused_while_a_rollout_uses_it(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    device = await create_device(api, admin)
    firmware = await uploaded(api, admin, os.urandom(300_000))
    update = await start(api, admin, firmware["id"], [device.id], devicesPerMinute=1)
    refused = await api.execute(
        op("DeleteFirmware"), {"id": firmware["id"]}, token=admin.access_token
    )
    assert refused.code == "CONFLICT"
    assert await stored_counts() == (1, 1, 2)
    cancel = await api.execute(
        op("CancelFirmwareUpdate"), {"id": update["id"]}, token=admin.access_token
    )
    assert cancel.data["cancelFirmwareUpdate"]["state"] == "CANCELLED"
    deleted = await api.execute(
        op("DeleteFirmware"), {"id": firmware["id"]}, token=admin.access_token
    )
    assert deleted.data == {"deleteFirmware": True}
    assert await stored_counts() == (0, 0, 0)
    again = await api.execute(
        op("DeleteFirmware"), {"id": firmware["id"]}, token=admin.access_token
    )
    assert again.code == "NOT_FOUND"
