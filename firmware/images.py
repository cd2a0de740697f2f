"""Firmware images: upload (stored, hashed and signed), list, delete. ADMIN operations."""

from __future__ import annotations

import logging
import re
from typing import Final

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.settings import ApiSettings
from firmware import storage
from firmware.signing import Signer
from firmware.storage import ImageTooLarge, Readable
from models.accounts import User
from models.firmware import ACTIVE_UPDATE_STATES, Firmware, FirmwareUpdate
from services import access
from services.errors import BadInput, Conflict, NotFound
from services.validation import clean_text, ensure_found, parse_id

logger = logging.getLogger(__name__)

# semver.org's own expression (2.0.0), anchored; build metadata allowed.
SEMVER: Final = re.compile(
    r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?"
)
MAX_VERSION_LENGTH: Final = 64
MAX_DEVICE_TYPE_LENGTH: Final = 64  # as a device's own type
MAX_FILENAME_LENGTH: Final = 255
# The Firmwares query has no pagination: it answers the newest this many.
LIST_MAX: Final = 500


def check_version(version: str) -> str:
    """A semantic version (https://semver.org), or BadInput naming `version`."""
    text = version.strip()
    if len(text) > MAX_VERSION_LENGTH or not SEMVER.fullmatch(text):
        raise BadInput("version", "must be a semantic version such as 1.4.2 or 2.0.0-rc.1")
    return text


def _filename(name: str | None) -> str | None:
    if not name:
        return None
    return "".join(ch for ch in name if ch.isprintable())[:MAX_FILENAME_LENGTH] or None


async def upload_firmware(
    uploader: User,
    *,
    file: Readable | None,
    filename: str | None,
    version: str,
    device_type: str,
    settings: ApiSettings,
    signer: Signer,
) -> Firmware:
    """Store an image in GridFS and sign its SHA-256; (device_type, version) is unique.

    The arguments are checked before a byte is stored, the duplicate too (the unique
    index settles a concurrent upload of the same version); on any failure the
    stored chunks are removed again. `file` None: the request carried no file.
    """
    access.require(uploader, "write", "firmware")
    if file is None:
        raise BadInput("file", "must be a file of a multipart request")
    clean_version = check_version(version)
    clean_type = clean_text(device_type, field="deviceType", max_length=MAX_DEVICE_TYPE_LENGTH)
    clean_filename = _filename(filename)
    if await Firmware.find_one({"device_type": clean_type, "version": clean_version}):
        raise Conflict(f"Firmware {clean_version} for {clean_type} exists already.")
    try:
        image = await storage.store_image(
            file,
            max_bytes=settings.firmware_max_bytes,
            filename=clean_filename,
            metadata={"deviceType": clean_type, "version": clean_version},
        )
    except ImageTooLarge as err:
        raise BadInput("file", f"must be at most {err.limit} bytes") from err
    try:
        if image.size == 0:
            raise BadInput("file", "must not be empty")
        firmware = Firmware(
            device_type=clean_type,
            version=clean_version,
            size=image.size,
            sha256=image.sha256,
            signature=signer.sign_digest(image.digest),
            public_key=signer.public_key,
            file_id=image.file_id,
            filename=clean_filename,
            created_by=uploader.id,
        )
        await firmware.insert()
    except DuplicateKeyError as err:
        await storage.delete_image(image.file_id)
        raise Conflict(f"Firmware {clean_version} for {clean_type} exists already.") from err
    except BaseException:
        await storage.delete_image(image.file_id)
        raise
    logger.info(
        "firmware %s %s uploaded by %s (%d bytes)",
        clean_type,
        clean_version,
        uploader.id,
        image.size,
    )
    return firmware


async def list_firmwares(viewer: User, *, device_type: str | None = None) -> list[Firmware]:
    """The newest LIST_MAX images, of one device type or all."""
    access.require(viewer, "read", "firmware")
    query: dict[str, object] = {"deleting": False}
    if device_type is not None:
        query["device_type"] = device_type.strip()
    return await Firmware.find(query).sort("-_id").limit(LIST_MAX).to_list()


async def get_firmware(firmware_id: str, *, field: str = "id") -> Firmware:
    """One image (not being deleted); NotFound otherwise."""
    object_id = parse_id(firmware_id, kind="firmware", field=field)
    return ensure_found(await Firmware.find_one({"_id": object_id, "deleting": False}), "Firmware")


async def delete_firmware(viewer: User, firmware_id: str) -> None:
    """Delete an image and its bytes; Conflict while a running or paused rollout uses it.

    Claimed first (`deleting`), then checked: a rollout started concurrently checks
    the claim after inserting itself (firmware.rollouts), so one of the two backs off.
    """
    access.require(viewer, "write", "firmware")
    object_id = parse_id(firmware_id, kind="firmware")
    raw = await Firmware.get_pymongo_collection().find_one_and_update(
        {"_id": object_id, "deleting": False},
        {"$set": {"deleting": True}},
        return_document=ReturnDocument.AFTER,
    )
    if raw is None:
        raise NotFound("Firmware")
    in_use = await FirmwareUpdate.find_one(
        {"firmware_id": object_id, "state": {"$in": list(ACTIVE_UPDATE_STATES)}}
    )
    if in_use is not None:
        await Firmware.get_pymongo_collection().update_one(
            {"_id": object_id}, {"$set": {"deleting": False}}
        )
        raise Conflict(
            f"Firmware update {in_use.id} uses this firmware; cancel it or let it finish first."
        )
    await storage.delete_image(raw["file_id"])
    await Firmware.get_pymongo_collection().delete_one({"_id": object_id})
    logger.info("firmware %s deleted", firmware_id)
