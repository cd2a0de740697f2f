"""Device twins: desired (users), reported (the device), their delta, sent to the device.

Every change is one guarded write: read the twin, compute the new side, write it only
if `revision` is still what was read, else read again and retry. Two API processes and
the ingest worker may change one twin at once; none of their changes is lost, and an
`expectedVersion` is checked against the version actually replaced.

After a change of desired the whole desired document is left retained (QoS 1) on
`devices/{id}/twin/desired`, `{"version": n, "desired": {...}}`. Writers may publish
in another order than they wrote, so a publisher reads the twin again once the broker
acknowledged, and publishes the newer document when there is one: the last message
the broker keeps is the current document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from bson import ObjectId
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError
from redis.exceptions import RedisError

from core.dynsec import BrokerUnavailable
from core.settings import ApiSettings
from core.twin_events import EventSink, TwinEvent, twin_channel
from models.accounts import User
from models.devices import Device
from models.twins import DeviceTwin
from services import access
from services.devices import get_device
from services.errors import BadInput, Conflict, NotFound
from services.live import Feed
from services.twin_cleanup import DesiredPublisher, desired_topic
from services.twin_documents import (
    InvalidDocument,
    check_document,
    check_patch,
    delta,
    merge_patch,
    same,
)

logger = logging.getLogger(__name__)

# Guarded writes that lose the race this often in a row answer CONFLICT: only a twin
# changed by many writers at once gets there.
MAX_ATTEMPTS: Final = 50
# Publishes of newer documents by one publisher (each one was current when read).
MAX_REPUBLISH: Final = 10


@dataclass(frozen=True, slots=True)
class Twin:
    device_id: str
    desired: dict[str, Any]
    reported: dict[str, Any]
    version: int
    revision: int
    desired_updated_at: datetime | None
    reported_updated_at: datetime | None

    @property
    def delta(self) -> dict[str, Any]:
        return delta(self.desired, self.reported)

    @classmethod
    def from_raw(cls, device_id: str, raw: dict[str, Any] | None) -> Twin:
        """A stored twin; a device without one has empty documents at version 0."""
        raw = raw or {}
        return cls(
            device_id=device_id,
            desired=raw.get("desired") or {},
            reported=raw.get("reported") or {},
            version=int(raw.get("version", 0)),
            revision=int(raw.get("revision", 0)),
            desired_updated_at=raw.get("desired_updated_at"),
            reported_updated_at=raw.get("reported_updated_at"),
        )

    def desired_message(self) -> bytes:
        """What the device receives on twin/desired."""
        return orjson.dumps({"version": self.version, "desired": self.desired})

    def event(self, owner_id: str) -> TwinEvent:
        return TwinEvent(
            device_id=self.device_id,
            owner_id=owner_id,
            desired=self.desired,
            reported=self.reported,
            version=self.version,
            revision=self.revision,
            desired_updated_at=self.desired_updated_at,
            reported_updated_at=self.reported_updated_at,
        )


def _object_id(device_id: str | ObjectId) -> ObjectId:
    return device_id if isinstance(device_id, ObjectId) else ObjectId(device_id)


async def read_twin(device_id: str | ObjectId) -> Twin:
    """The device's twin (empty at version 0 when it has none); no access check."""
    oid = _object_id(device_id)
    raw = await DeviceTwin.get_pymongo_collection().find_one({"_id": oid})
    return Twin.from_raw(str(oid), raw)


async def read_twins(device_ids: Sequence[ObjectId]) -> list[Twin]:
    """The twins of these devices, in their order, in one read; no access check."""
    cursor = DeviceTwin.get_pymongo_collection().find({"_id": {"$in": list(device_ids)}})
    found = {raw["_id"]: raw async for raw in cursor}
    return [Twin.from_raw(str(oid), found.get(oid)) for oid in device_ids]


async def get_twin(viewer: User, device_id: str) -> Twin:
    """The twin of a device the viewer may see (NotFound otherwise)."""
    device = await get_device(viewer, device_id)
    return await read_twin(str(device.id))


async def twin_feed(viewer: User, device_id: str) -> Feed:
    """The live feed of one device's twin changes, for a viewer who may see the device
    (NotFound otherwise); each event is checked against the viewer again."""
    device = await get_device(viewer, device_id)
    own_id = str(device.id)
    return Feed(twin_channel(own_id), access.viewer_of(viewer), "device", device_id=own_id)


async def _device_exists(oid: ObjectId) -> bool:
    return await Device.get_pymongo_collection().find_one({"_id": oid}, {"_id": 1}) is not None


type Change = Callable[[Twin], dict[str, Any] | None]


async def _change(oid: ObjectId, change: Change) -> tuple[Twin, bool]:
    """Apply `change` (the fields to set, None: nothing changes) as one guarded write;
    the twin after it and whether anything was written."""
    collection = DeviceTwin.get_pymongo_collection()
    for _ in range(MAX_ATTEMPTS):
        raw = await collection.find_one({"_id": oid})
        current = Twin.from_raw(str(oid), raw)
        fields = change(current)
        if fields is None:
            return current, False
        revision = current.revision + 1
        if raw is None:
            document: dict[str, Any] = {
                "_id": oid,
                "desired": {},
                "reported": {},
                "version": 0,
                "desired_updated_at": None,
                "reported_updated_at": None,
                **fields,
                "revision": revision,
            }
            try:
                await collection.insert_one(document)
            except DuplicateKeyError:
                logger.debug("twin of device %s made meanwhile; trying again", oid)
                continue  # another writer made it first: change that one
            # A device deleted meanwhile would keep this twin forever: it goes too.
            if not await _device_exists(oid):
                await collection.delete_one({"_id": oid})
                raise NotFound("Device")
            return Twin.from_raw(str(oid), document), True
        updated = await collection.find_one_and_update(
            {"_id": oid, "revision": current.revision},
            {"$set": {**fields, "revision": revision}},
            return_document=ReturnDocument.AFTER,
        )
        if updated is not None:
            return Twin.from_raw(str(oid), updated), True
        if not await _device_exists(oid):
            raise NotFound("Device")
        logger.debug("twin of device %s changed meanwhile; trying again", oid)
    raise Conflict("The twin kept changing while it was updated; try again.")


async def update_desired(
    viewer: User,
    device_id: str,
    patch: Any,
    *,
    expected_version: int | None,
    settings: ApiSettings,
    publisher: DesiredPublisher,
    sink: EventSink,
) -> Twin:
    """Merge `patch` (RFC 7396) into desired, send the document to the device.

    Conflict when `expected_version` is given and is not the version replaced. A patch
    that changes nothing writes nothing and keeps the version. A broker outage does not
    undo the change: the device receives it when it asks (twin/get) or at the next one.
    """
    device = await get_device(viewer, device_id, action="write")
    try:
        check_patch(patch, name="patch")
    except InvalidDocument as err:
        raise BadInput("patch", str(err).removeprefix("patch: ")) from err
    now = datetime.now(UTC)

    def change(current: Twin) -> dict[str, Any] | None:
        if expected_version is not None and expected_version != current.version:
            raise Conflict(
                f"The twin is at version {current.version}, not {expected_version}; "
                "read it again and retry."
            )
        desired = merge_patch(current.desired, patch)
        if same(desired, current.desired):
            return None
        try:
            check_document(desired, name="desired", max_bytes=settings.twin_max_bytes)
        except InvalidDocument as err:
            raise BadInput("patch", f"the resulting {err}") from err
        return {"desired": desired, "version": current.version + 1, "desired_updated_at": now}

    twin, changed = await _change(_object_id(str(device.id)), change)
    if changed:
        await announce(sink, twin, str(device.organization_id))
        try:
            await publish_desired(publisher, twin)
        except BrokerUnavailable as err:
            logger.warning(
                "desired state %d of device %s stored, not sent (%s); the device gets it "
                "on twin/get or with the next change",
                twin.version,
                twin.device_id,
                err,
            )
    logger.info("desired state of device %s at version %d", device.id, twin.version)
    return twin


async def apply_reported(device_id: str, patch: Any, *, max_bytes: int) -> Twin | None:
    """Merge a device's report (RFC 7396) into reported; the twin after it, or None when
    nothing changed. InvalidDocument for a bad patch or a result over `max_bytes`,
    NotFound when the device is gone."""
    check_patch(patch, name="reported")
    now = datetime.now(UTC)

    def change(current: Twin) -> dict[str, Any] | None:
        reported = merge_patch(current.reported, patch)
        if same(reported, current.reported):
            return None
        check_document(reported, name="reported", max_bytes=max_bytes)
        return {"reported": reported, "reported_updated_at": now}

    twin, changed = await _change(_object_id(device_id), change)
    return twin if changed else None


async def publish_desired(publisher: DesiredPublisher, twin: Twin) -> None:
    """Leave `twin`'s desired document retained on its device's topic; if the twin
    changed before the broker acknowledged, the newer document after it. A device
    deleted meanwhile has its topic cleared. Raises the publisher's errors."""
    topic = desired_topic(twin.device_id)
    oid = _object_id(twin.device_id)
    current = twin
    for _ in range(MAX_REPUBLISH):
        await publisher.publish(topic, current.desired_message(), qos=1, retain=True)
        raw = await DeviceTwin.get_pymongo_collection().find_one({"_id": oid})
        if raw is None and current.version and not await _device_exists(oid):
            await publisher.publish(topic, b"", qos=1, retain=True)
            return
        latest = Twin.from_raw(twin.device_id, raw)
        if latest.version == current.version:
            return
        current = latest
    logger.warning("desired state of device %s kept changing while it was sent", oid)


async def announce(sink: EventSink, twin: Twin, owner_id: str) -> None:
    """Publish the twin's state live (twinChanged); pub/sub trouble is logged, not raised."""
    try:
        await sink.publish(twin_channel(twin.device_id), twin.event(owner_id).encode())
    except (RedisError, OSError) as err:
        logger.warning("twin change of device %s not published live: %s", twin.device_id, err)
