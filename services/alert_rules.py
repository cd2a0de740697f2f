"""Alert rules per device, of the kinds services.rule_kinds defines (threshold, no data).

A rule belongs to its device's owner (an ADMIN may manage anybody's, as with devices).
Every change is announced on Redis (ALERT_RULES_CHANNEL, the device id) so the ingest
workers reload that device's rules at once; deleting or disabling a rule clears its
open alert.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from pymongo import ReturnDocument
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.events import ALERT_RULES_CHANNEL
from core.settings import ApiSettings
from models.accounts import User, utcnow
from models.alerts import AlertRule, rule_open_key
from services import access
from services.alerts import close_rule_alert
from services.devices import get_device
from services.errors import BadInput, Conflict, NotFound
from services.rule_kinds import RuleFields
from services.validation import ensure_found, parse_id

logger = logging.getLogger(__name__)

# What update_rule may change; anything else is a programming error.
UPDATABLE = frozenset(
    {
        "metric",
        "min_value",
        "max_value",
        "hysteresis",
        "duration_seconds",
        "no_data_seconds",
        "severity",
        "enabled",
    }
)


def _fields_of(rule: AlertRule) -> RuleFields:
    return RuleFields(
        kind=rule.kind,
        metric=rule.metric,
        min_value=rule.min_value,
        max_value=rule.max_value,
        hysteresis=rule.hysteresis,
        duration_seconds=rule.duration_seconds,
        no_data_seconds=rule.no_data_seconds,
        severity=rule.severity,
    )


async def notify_rule_change(redis: Redis, device_id: object) -> None:
    """Tell the workers to reload this device's rules (they also reload periodically)."""
    try:
        await redis.publish(ALERT_RULES_CHANNEL, str(device_id))
    except RedisError as err:
        logger.warning("rules of device %s changed, not announced: %s", device_id, err)


async def create_rule(
    viewer: User, device_id: str, fields: RuleFields, *, settings: ApiSettings, redis: Redis
) -> AlertRule:
    """A new enabled rule on a device the viewer may see; it belongs to the device's
    organization (Forbidden for a VIEWER there)."""
    device = await get_device(viewer, device_id)
    access.require(viewer, "write", "alert_rule", device.organization_id)
    checked = fields.checked()
    # Counted before inserting: concurrent creations may overshoot by a few, no more.
    if await AlertRule.find({"device_id": device.id}).count() >= (
        settings.alert_rules_per_device_max
    ):
        raise Conflict(
            f"At most {settings.alert_rules_per_device_max} alert rules per device; "
            "delete one first."
        )
    now = utcnow()
    rule = AlertRule(
        owner_id=device.owner_id,
        organization_id=device.organization_id,
        device_id=device.id,
        kind=checked.kind,
        metric=checked.metric,
        min_value=checked.min_value,
        max_value=checked.max_value,
        hysteresis=checked.hysteresis,
        duration_seconds=checked.duration_seconds,
        no_data_seconds=checked.no_data_seconds,
        severity=checked.severity,
        created_at=now,
        updated_at=now,
        armed_at=now,
    )
    await rule.insert()
    await notify_rule_change(redis, device.id)
    logger.info("alert rule %s created on device %s by user %s", rule.id, device.id, viewer.id)
    return rule


async def list_rules(viewer: User, device_id: str | None) -> list[AlertRule]:
    """The viewer's rules (an ADMIN's: all), of one device or every one, newest first."""
    filters = access.visible_filter(viewer, "alert_rule")
    if device_id is not None:
        filters["device_id"] = (await get_device(viewer, device_id)).id
    return await AlertRule.find(filters).sort("-_id").to_list()


async def get_rule(viewer: User, rule_id: str, *, action: access.Action = "read") -> AlertRule:
    """One rule the viewer may see, and `action`; NotFound for a missing or foreign one
    alike, Forbidden for one it may see but not `action`."""
    visible = access.visible_filter(viewer, "alert_rule")
    query = {"_id": parse_id(rule_id, kind="alert rule"), **visible}
    rule = ensure_found(await AlertRule.find_one(query), "Alert rule")
    access.require(viewer, action, "alert_rule", rule.organization_id)
    return rule


async def update_rule(
    viewer: User, rule_id: str, changes: Mapping[str, Any], *, redis: Redis
) -> AlertRule:
    """Change some of a rule's settings (checked together with the rest). Disabling it
    clears its open alert; enabling it (or changing noDataSeconds) re-arms it."""
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    rule = await get_rule(viewer, rule_id, action="write")
    for name in ("severity", "enabled", "hysteresis", "duration_seconds"):
        if name in changes and changes[name] is None:
            raise BadInput(_api_name(name), "must not be null")
    merged = replace(
        _fields_of(rule), **{k: v for k, v in changes.items() if k != "enabled"}
    ).checked()
    enabled = changes.get("enabled", rule.enabled)
    now = utcnow()
    update: dict[str, Any] = {
        "metric": merged.metric,
        "min_value": merged.min_value,
        "max_value": merged.max_value,
        "hysteresis": merged.hysteresis,
        "duration_seconds": merged.duration_seconds,
        "no_data_seconds": merged.no_data_seconds,
        "severity": merged.severity.value,
        "enabled": enabled,
        "updated_at": now,
    }
    if (enabled and not rule.enabled) or merged.no_data_seconds != rule.no_data_seconds:
        update["armed_at"] = now
    raw = await AlertRule.get_pymongo_collection().find_one_and_update(
        {"_id": rule.id}, {"$set": update}, return_document=ReturnDocument.AFTER
    )
    if raw is None:
        raise NotFound("Alert rule")  # deleted meanwhile
    updated: AlertRule = AlertRule.model_validate(raw)
    if rule.enabled and not updated.enabled:
        await close_rule_alert(rule_open_key(rule.id), by="rule_disabled", redis=redis)
    await notify_rule_change(redis, rule.device_id)
    return updated


async def delete_rule(viewer: User, rule_id: str, *, redis: Redis) -> None:
    """Remove a rule; its open alert is cleared (kept, as history)."""
    writable = access.visible_filter(viewer, "alert_rule", action="write")
    query = {"_id": parse_id(rule_id, kind="alert rule"), **writable}
    raw = await AlertRule.get_pymongo_collection().find_one_and_delete(query)
    if raw is None:
        # Not writable: NotFound unless visible, Forbidden when it is (a VIEWER's).
        await get_rule(viewer, rule_id, action="write")
        raise NotFound("Alert rule")  # deleted meanwhile
    await close_rule_alert(rule_open_key(raw["_id"]), by="rule_deleted", redis=redis)
    await notify_rule_change(redis, raw["device_id"])
    logger.info("alert rule %s deleted by user %s", raw["_id"], viewer.id)


def _api_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
