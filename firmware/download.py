"""`GET /firmware/{id}/download`: the image, streamed from GridFS, to a device it was offered to.

Authentication is the device token (`Authorization: Bearer`, services.tokens),
revoked by credential rotation. The answer carries `Content-Length`, a strong
`ETag` (the image's SHA-256) and `Accept-Ranges: bytes`; a single `Range`
(`bytes=a-b`, `bytes=a-`, `bytes=-n`) is answered with 206, so a device resumes
an interrupted download where it stopped (`If-Range` with the ETag makes sure
the bytes still belong to the same image). Several ranges in one request are
answered with the whole image (RFC 9110 lets a server ignore Range).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from api.state import AppState
from firmware import storage
from firmware.rollouts import downloadable_firmware
from firmware.storage import ImageCorrupt, ImageFile
from services.devices import authenticate_device_token
from services.errors import Forbidden, Unauthenticated
from services.tokens import bearer_token

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

type ByteRange = tuple[int, int]  # first and last byte, inclusive


class Unsatisfiable(Exception):
    """The range lies wholly past the end of the image (416)."""


def parse_range(header: str | None, length: int) -> ByteRange | None:
    """The one byte range a `Range` header asks for, None for the whole image.

    Unsatisfiable when it starts past the end; malformed or multiple ranges are
    ignored (None), as RFC 9110 allows.
    """
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise Unsatisfiable
        return max(0, length - suffix), length - 1
    start = int(first)
    end = int(last) if last else length - 1
    if last and end < start:
        return None  # malformed
    if start >= length:
        raise Unsatisfiable
    return start, min(end, length - 1)


def _etag(sha256: str) -> str:
    return f'"{sha256}"'


async def _stream(image: ImageFile, start: int, end: int) -> AsyncIterator[bytes]:
    try:
        async for block in storage.read_range(image, start, end):
            yield block
    except ImageCorrupt:
        # Headers are gone already: the short body (Content-Length) tells the device.
        logger.exception("firmware image %s is damaged; download cut short", image.file_id)
        raise


async def download_firmware(request: Request) -> Response:
    """Stream an image to a device it was offered to (200 or 206)."""
    state: AppState = request.app.state.platform
    try:
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise Unauthenticated("A device token is required.")
        device, _claims = await authenticate_device_token(token, settings=state.settings)
    except Unauthenticated as err:
        return PlainTextResponse(
            err.message, status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        if device.id is None:  # a stored device always has one
            raise Forbidden("Unknown device.")
        firmware = await downloadable_firmware(device.id, request.path_params["firmware_id"])
    except Forbidden as err:
        return PlainTextResponse(err.message, status_code=403)
    image = await storage.find_image(firmware.file_id)
    if image is None or image.length != firmware.size:
        logger.error("firmware %s has no stored image", firmware.id)
        return PlainTextResponse("The image is not available.", status_code=503)
    etag = _etag(firmware.sha256)
    headers = {"ETag": etag, "Accept-Ranges": "bytes", "Cache-Control": "no-store"}
    if request.headers.get("if-none-match") in (etag, "*"):
        return Response(status_code=304, headers=headers)
    if_range = request.headers.get("if-range")
    try:
        wanted = parse_range(request.headers.get("range"), image.length)
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{image.length}"
        return PlainTextResponse("Range not satisfiable.", status_code=416, headers=headers)
    if wanted is not None and if_range is not None and if_range != etag:
        wanted = None  # the device holds bytes of another image: start over
    start, end = wanted if wanted is not None else (0, image.length - 1)
    headers["Content-Length"] = str(end - start + 1)
    if wanted is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{image.length}"
    status = 206 if wanted is not None else 200
    logger.info(
        "firmware %s to device %s: bytes %d-%d/%d", firmware.id, device.id, start, end, image.length
    )
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type="application/octet-stream")
    return StreamingResponse(
        _stream(image, start, end),
        status_code=status,
        headers=headers,
        media_type="application/octet-stream",
    )
