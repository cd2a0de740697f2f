"""Alert lifecycle: ACTIVE -> ACKNOWLEDGED -> CLEARED, one open alert per rule and device.

The ingest worker raises and auto-clears (open_alert, close_open_alert); users list,
acknowledge and clear through the API. Every change is published on Redis
(core.events.AlertEvent) for the alertRaised / alertUpdated subscriptions and for the
workers, which keep their rule states in step with what users clear.

Visibility follows readings: the device's owner, and every ADMIN. Somebody else's
alert is NOT_FOUND, exactly like a missing one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.events import (
    ALERTS_ALL_CHANNEL,
    AlertChange,
    AlertEvent,
    alert_channels,
    alert_device_channel,
    alert_owner_channel,
)
from models.accounts import User, utcnow
from models.alerts import OPEN_STATES, Alert, AlertKind, AlertState, Severity
from services import access
from services.devices import get_device
from services.live import Feed, organizations_feed
from services.pagination import Page, paginate
from services.validation import ensure_found, parse_id

logger = logging.getLogger(__name__)

# Who an event comes from when the API publishes it (workers name themselves).
API_ORIGIN = "api"


@dataclass(frozen=True, slots=True, kw_only=True)
class NewAlert:
    # The device's organization (as live events name it, its "owner").
    owner_id: str
    device_id: str
    rule_id: str | None
    kind: AlertKind
    metric: str | None
    value: float | None
    message: str
    severity: Severity
    # Only while open; None for alerts that may coexist (anomalies).
    open_key: str | None


async def open_alert(new: NewAlert) -> Alert | None:
    """Insert a new ACTIVE alert; None when one with the same open key is already open.

    The sparse unique index on open_key decides, so this holds for any number of
    concurrent workers, not only within one."""
    alert = Alert(
        # NewAlert.owner_id is the device's organization, as live events carry it.
        organization_id=parse_id(new.owner_id, kind="organization"),
        device_id=parse_id(new.device_id, kind="device"),
        rule_id=parse_id(new.rule_id, kind="rule") if new.rule_id else None,
        kind=new.kind,
        metric=new.metric,
        value=new.value,
        message=new.message,
        severity=new.severity,
        open_key=new.open_key,
    )
    try:
        await alert.insert()
    except DuplicateKeyError:
        return None
    return alert


async def close_open_alert(open_key: str, *, by: str) -> Alert | None:
    """Clear the open alert of `open_key`, if there is one; the cleared alert."""
    raw = await Alert.get_pymongo_collection().find_one_and_update(
        {"open_key": open_key},
        {
            "$set": {"state": AlertState.CLEARED.value, "cleared_at": utcnow(), "cleared_by": by},
            "$unset": {"open_key": ""},
        },
        return_document=ReturnDocument.AFTER,
    )
    return Alert.model_validate(raw) if raw is not None else None


def alert_event(alert: Alert, change: AlertChange, *, origin: str) -> AlertEvent:
    """The live event announcing one change of `alert`."""
    return AlertEvent(
        change=change,
        alert_id=str(alert.id),
        device_id=str(alert.device_id),
        owner_id=str(alert.organization_id),
        rule_id=str(alert.rule_id) if alert.rule_id else None,
        kind=alert.kind.value,
        metric=alert.metric,
        value=alert.value,
        message=alert.message,
        severity=alert.severity.value,
        state=alert.state.value,
        raised_at=alert.raised_at,
        acknowledged_at=alert.acknowledged_at,
        cleared_at=alert.cleared_at,
        origin=origin,
    )


async def publish_alert_event(redis: Redis, event: AlertEvent) -> bool:
    """Publish on the device, owner and all-alerts channels; False when Redis failed
    (the change itself is in MongoDB; only its live announcement is lost)."""
    payload = event.encode()
    try:
        async with redis.pipeline(transaction=False) as pipe:
            for channel in alert_channels(event.device_id, event.owner_id):
                pipe.publish(channel, payload)
            await pipe.execute()
    except RedisError as err:
        logger.warning("alert %s %s, but not announced: %s", event.alert_id, event.change, err)
        return False
    return True


async def list_alerts(
    viewer: User,
    *,
    state: AlertState | None,
    device_id: str | None,
    first: int,
    after: str | None,
) -> Page[Alert]:
    """The alerts the viewer may see, newest first, optionally of one state or device."""
    filters = access.visible_filter(viewer, "alert")
    if state is not None:
        filters["state"] = state.value
    if device_id is not None:
        filters["device_id"] = (await get_device(viewer, device_id)).id
    return await paginate(Alert, filters, first=first, after=after, newest_first=True)


async def get_alert(viewer: User, alert_id: str) -> Alert:
    """One alert the viewer may see; NotFound for a missing or foreign one alike."""
    query = {"_id": parse_id(alert_id, kind="alert"), **access.visible_filter(viewer, "alert")}
    return ensure_found(await Alert.find_one(query), "Alert")


async def _unchanged(viewer: User, alert_id: str) -> Alert:
    """An alert a write left as it was: NotFound unless visible, Forbidden unless writable."""
    alert = await get_alert(viewer, alert_id)
    access.require(viewer, "write", "alert", alert.organization_id)
    return alert


async def acknowledge_alert(viewer: User, alert_id: str, *, redis: Redis) -> Alert:
    """ACTIVE -> ACKNOWLEDGED. Idempotent: an acknowledged alert stays as it is, and a
    cleared one keeps its state but records when it was acknowledged (once)."""
    writable = access.visible_filter(viewer, "alert", action="write")
    query = {"_id": parse_id(alert_id, kind="alert"), **writable}
    now = utcnow()
    collection = Alert.get_pymongo_collection()
    raw = await collection.find_one_and_update(
        {**query, "state": AlertState.ACTIVE.value},
        {"$set": {"state": AlertState.ACKNOWLEDGED.value, "acknowledged_at": now}},
        return_document=ReturnDocument.AFTER,
    )
    if raw is None:
        raw = await collection.find_one_and_update(
            {**query, "state": AlertState.CLEARED.value, "acknowledged_at": None},
            {"$set": {"acknowledged_at": now}},
            return_document=ReturnDocument.AFTER,
        )
    if raw is None:
        return await _unchanged(viewer, alert_id)  # already acknowledged, or NotFound
    alert: Alert = Alert.model_validate(raw)
    await publish_alert_event(redis, alert_event(alert, "acknowledged", origin=API_ORIGIN))
    logger.info("alert %s acknowledged by user %s", alert.id, viewer.id)
    return alert


async def clear_alert(viewer: User, alert_id: str, *, redis: Redis) -> Alert:
    """Clear an open alert by hand (idempotent). Its rule may raise a new one at the next
    reading that is still out of range."""
    writable = access.visible_filter(viewer, "alert", action="write")
    query = {"_id": parse_id(alert_id, kind="alert"), **writable}
    raw = await Alert.get_pymongo_collection().find_one_and_update(
        {**query, "state": {"$in": list(OPEN_STATES)}},
        {
            "$set": {
                "state": AlertState.CLEARED.value,
                "cleared_at": utcnow(),
                "cleared_by": "user",
            },
            "$unset": {"open_key": ""},
        },
        return_document=ReturnDocument.AFTER,
    )
    if raw is None:
        return await _unchanged(viewer, alert_id)  # already cleared, or NotFound
    alert: Alert = Alert.model_validate(raw)
    await publish_alert_event(redis, alert_event(alert, "cleared", origin=API_ORIGIN))
    logger.info("alert %s cleared by user %s", alert.id, viewer.id)
    return alert


async def close_rule_alert(open_key: str, *, by: str, redis: Redis) -> None:
    """Clear a rule's open alert (the rule was deleted or disabled) and announce it."""
    alert = await close_open_alert(open_key, by=by)
    if alert is not None:
        await publish_alert_event(redis, alert_event(alert, "cleared", origin=API_ORIGIN))


async def alert_feed(viewer: User, device_id: str | None = None) -> Feed:
    """The live alert events the viewer may see: of one device (NotFound unless visible),
    or of all the viewer's devices (an ADMIN's: everyone's)."""
    principal = access.viewer_of(viewer)
    if device_id is not None:
        own_id = str((await get_device(viewer, device_id)).id)
        return Feed(alert_device_channel(own_id), principal, "alert", device_id=own_id)
    if access.sees_all(viewer, "alert"):
        return Feed(ALERTS_ALL_CHANNEL, principal, "alert")
    return organizations_feed(principal, "alert", alert_owner_channel)
