"""Device progress: reports from devices, per-device timeouts, the subscriber's view.

Every move is one conditional write on the device's target: the filter names the
states it may come from, so a report that would move a device backwards (or past
its end) matches nothing, whichever process writes, in whatever order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from beanie import PydanticObjectId
from pymongo import ReturnDocument

from core.events import OtaProgressEvent
from models.accounts import utcnow
from models.devices import Device
from models.firmware import (
    IN_FLIGHT,
    RANK,
    TERMINAL,
    FirmwareUpdate,
    FirmwareUpdateTarget,
    TargetState,
)

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 500
TIMED_OUT = "timed out waiting for the device's progress"

type RejectReason = Literal["unknown_update", "wrong_device", "backwards"]


class ReportRejected(Exception):
    """A device report that cannot apply; `reason` says why."""

    def __init__(self, reason: RejectReason) -> None:
        super().__init__(reason)
        self.reason: RejectReason = reason


@dataclass(frozen=True, slots=True)
class Report:
    """One parsed devices/{id}/ota/progress message."""

    update_id: str  # 24 hex digits
    state: TargetState  # one of models.firmware.REPORTED
    progress: int | None
    error: str | None


def _earlier(state: TargetState) -> list[TargetState]:
    return [other for other, rank in RANK.items() if rank < RANK[state]]


def _condition(state: TargetState, progress: int) -> dict[str, Any]:
    """The states a device may report `state` from: any earlier one, or the same
    unfinished state with no more progress than this report's."""
    earlier = {"state": {"$in": _earlier(state)}}
    if state in TERMINAL:
        return earlier
    return {"$or": [earlier, {"state": state, "progress": {"$lte": progress}}]}


async def apply_report(
    device_id: str, report: Report, *, now: datetime | None = None
) -> FirmwareUpdateTarget:
    """Store a device's report; ReportRejected when it does not apply.

    A repeated final report (a QoS 1 redelivery, or a retry after a database error
    half-way) returns the target as it is, so its effects are applied again, safely.
    On SUCCEEDED the device's firmwareVersion becomes the rollout's version.
    """
    now = now or utcnow()
    update_id = PydanticObjectId(report.update_id)
    update = await FirmwareUpdate.get_pymongo_collection().find_one(
        {"_id": update_id}, {"device_timeout_seconds": 1}
    )
    if update is None:
        raise ReportRejected("unknown_update")
    if report.progress is not None:
        progress = report.progress
    else:
        progress = 100 if report.state == TargetState.SUCCEEDED else 0
    fields: dict[str, Any] = {
        "state": report.state,
        "progress": progress,
        "error": report.error[:MAX_ERROR_LENGTH] if report.error else None,
        "updated_at": now,
        # Each report gives a device another full timeout; a finished one has none.
        "deadline": None
        if report.state in TERMINAL
        else now + timedelta(seconds=int(update["device_timeout_seconds"])),
    }
    targets = FirmwareUpdateTarget.get_pymongo_collection()
    key = {"update_id": update_id, "device_id": PydanticObjectId(device_id)}
    raw = await targets.find_one_and_update(
        {**key, **_condition(report.state, progress)},
        {"$set": fields},
        return_document=ReturnDocument.AFTER,
    )
    if raw is None:
        current = await targets.find_one(key)
        if current is None:
            raise ReportRejected("wrong_device")
        if not (report.state in TERMINAL and current["state"] == report.state):
            raise ReportRejected("backwards")
        raw = current  # the same final report again
    target: FirmwareUpdateTarget = FirmwareUpdateTarget.model_validate(raw)
    if target.state == TargetState.SUCCEEDED:
        await Device.get_pymongo_collection().update_one(
            {"_id": target.device_id}, {"$set": {"firmware_version": target.version}}
        )
    return target


async def expire_one(now: datetime) -> FirmwareUpdateTarget | None:
    """Fail one in-flight device whose deadline passed (claimed atomically), if any."""
    raw = await FirmwareUpdateTarget.get_pymongo_collection().find_one_and_update(
        {"state": {"$in": list(IN_FLIGHT)}, "deadline": {"$lte": now}},
        {
            "$set": {
                "state": TargetState.FAILED,
                "error": TIMED_OUT,
                "deadline": None,
                "updated_at": now,
            }
        },
        return_document=ReturnDocument.AFTER,
    )
    if raw is None:
        return None
    target: FirmwareUpdateTarget = FirmwareUpdateTarget.model_validate(raw)
    logger.info("device %s timed out in firmware update %s", target.device_id, target.update_id)
    return target


class ProgressView:
    """What one subscriber has been shown: each device's latest (rank, progress).

    The subscriber is given a snapshot and then live events, which may overlap or
    arrive out of order around the snapshot; only news moves a device forward.
    """

    def __init__(self, device_count: int) -> None:
        self._device_count = device_count
        self._shown: dict[str, tuple[int, int]] = {}
        self._finished: set[str] = set()

    def accept(self, event: OtaProgressEvent) -> bool:
        """Whether `event` is news to this subscriber (and note it)."""
        try:
            state = TargetState(event.state)
        except ValueError:
            return False
        position = (RANK[state], event.progress)
        shown = self._shown.get(event.device_id)
        if shown is not None and position <= shown:
            return False
        self._shown[event.device_id] = position
        if state in TERMINAL:
            self._finished.add(event.device_id)
        return True

    @property
    def finished(self) -> bool:
        """Every device of the rollout has been shown in a final state."""
        return len(self._finished) >= self._device_count
