"""GET /firmware/{id}/download: device token, offered devices only, Range resume, ETag."""

from __future__ import annotations

import hashlib
import os

import pytest

from firmware import storage
from firmware.download import Unsatisfiable, parse_range
from tests.client import Api
from tests.contract import op
from tests.factories import Session, admin_and_user, create_device
from tests.integration.firmware.helpers import rollout_until, start, states, uploaded

IMAGE_SIZE = 700_000  # three GridFS chunks, the last one short


async def offered(api: Api, admin: Session, image: bytes) -> tuple[str, str, str]:
    """A device with a rollout of `image` dispatched to it: (firmware id, device id, token)."""
    device = await create_device(api, admin, name="downloader")
    firmware = await uploaded(api, admin, image)
    update = await start(api, admin, firmware["id"], [device.id])
    await rollout_until(api, admin, update["id"], lambda u: states(u)[device.id] == "DISPATCHED")
    return firmware["id"], device.id, device.token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_download_firmware_interrupted_halfway_resumes_with_range(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    image = os.urandom(IMAGE_SIZE)
    firmware_id, _, token = await offered(api, admin, image)
    url = f"/firmware/{firmware_id}/download"
    first = bytearray()
    async with api.http.stream("GET", url, headers=auth(token)) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(IMAGE_SIZE)
        assert response.headers["accept-ranges"] == "bytes"
        etag = response.headers["etag"]
        assert etag == f'"{hashlib.sha256(image).hexdigest()}"'
        async for block in response.aiter_raw(16 * 1024):
            first += block
            if len(first) >= IMAGE_SIZE // 2:
                break  # the connection drops half-way
    assert IMAGE_SIZE // 2 <= len(first) < IMAGE_SIZE
    rest = await api.http.get(
        url, headers={**auth(token), "Range": f"bytes={len(first)}-", "If-Range": etag}
    )
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {len(first)}-{IMAGE_SIZE - 1}/{IMAGE_SIZE}"
    assert rest.headers["content-length"] == str(IMAGE_SIZE - len(first))
    assert bytes(first) + rest.content == image


async def test_download_firmware_answers_ranges_inside_and_across_chunks(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    image = os.urandom(IMAGE_SIZE)
    firmware_id, _, token = await offered(api, admin, image)
    url = f"/firmware/{firmware_id}/download"
    chunk = 255 * 1024
    for header, expected in [
        ("bytes=0-0", image[:1]),
        (f"bytes={chunk - 10}-{chunk + 10}", image[chunk - 10 : chunk + 11]),
        ("bytes=-100", image[-100:]),
        (f"bytes={IMAGE_SIZE - 5}-{IMAGE_SIZE + 500}", image[-5:]),
    ]:
        response = await api.http.get(url, headers={**auth(token), "Range": header})
        assert response.status_code == 206, header
        assert response.content == expected, header
    unsatisfiable = await api.http.get(
        url, headers={**auth(token), "Range": f"bytes={IMAGE_SIZE}-"}
    )
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["content-range"] == f"bytes */{IMAGE_SIZE}"
    # If-Range naming another image: the whole of this one.
    stale = await api.http.get(
        url, headers={**auth(token), "Range": "bytes=10-", "If-Range": '"other"'}
    )
    assert stale.status_code == 200
    assert stale.content == image
    head = await api.http.head(url, headers=auth(token))
    assert head.status_code == 200
    assert head.headers["content-length"] == str(IMAGE_SIZE)


async def test_download_firmware_refuses_devices_without_a_rollout_of_it(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    image = os.urandom(10_000)
    firmware_id, _, token = await offered(api, admin, image)
    stranger = await create_device(api, admin, name="not in the rollout")
    url = f"/firmware/{firmware_id}/download"
    refused = await api.http.get(url, headers=auth(stranger.token))
    assert refused.status_code == 403
    assert refused.content != image
    missing = await api.http.get(f"/firmware/{'0' * 24}/download", headers=auth(token))
    assert missing.status_code == 403
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}):
        unauthenticated = await api.http.get(url, headers=headers)
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["www-authenticate"] == "Bearer"


async def test_download_firmware_refuses_rotated_device_token(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    firmware_id, device_id, token = await offered(api, admin, os.urandom(1000))
    rotated = await api.execute(
        op("RotateDeviceCredentials"), {"id": device_id}, token=admin.access_token
    )
    new_token = rotated.data["rotateDeviceCredentials"]["token"]
    url = f"/firmware/{firmware_id}/download"
    assert (await api.http.get(url, headers=auth(token))).status_code == 401
    assert (await api.http.get(url, headers=auth(new_token))).status_code == 200


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, 999)),
        ("bytes=-10", (990, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=900-5000", (900, 999)),
        ("bytes=5-1", None),  # malformed: ignored
        ("bytes=0-1,5-6", None),  # several ranges: the whole image
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_parse_range_cases(header: str | None, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=-0", "bytes=2000-3000"])
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, 1000)


async def test_download_firmware_lost_image_is_not_served(api: Api) -> None:
    admin, _ = await admin_and_user(api)
    firmware_id, _, token = await offered(api, admin, os.urandom(1000))
    url = f"/firmware/{firmware_id}/download"
    assert (await api.http.get(url, headers=auth(token))).status_code == 200
    # The bytes vanish from GridFS behind the platform's back.
    await storage.database()[f"{storage.BUCKET}.files"].delete_many({})
    lost = await api.http.get(url, headers=auth(token))
    assert lost.status_code == 503
