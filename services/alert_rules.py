"""Alert rules: thresholds (min/max, hysteresis, duration) and no-data rules, per device.

A rule belongs to its device's owner (an ADMIN may manage anybody's, as with devices).
Every change is announced on Redis (ALERT_RULES_CHANNEL, the device id) so the ingest
workers reload that device's rules at once; deleting or disabling a rule clears its
open alert.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from pymongo import ReturnDocument
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.events import ALERT_RULES_CHANNEL
from core.settings import Settings
from models.accounts import Role, User, utcnow
from models.alerts import AlertRule, RuleKind, Severity, rule_open_key
from services.alerts import close_rule_alert
from services.devices import get_device
from services.errors import BadInput, Conflict, NotFound
from services.validation import clean_text, ensure_found, parse_id

logger = logging.getLogger(__name__)

MAX_METRIC_LENGTH = 100
MAX_SECONDS = 7 * 24 * 3600
# What update_rule may change; anything else is a programming error.
UPDATABLE = frozenset(
    {
        "metric",
        "min",
        "max",
        "hysteresis",
        "duration_seconds",
        "no_data_seconds",
        "severity",
        "enabled",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleFields:
    """A rule's settings, checked together (min against max, hysteresis against both)."""

    kind: RuleKind
    metric: str | None = None
    min: float | None = None
    max: float | None = None
    hysteresis: float = 0.0
    duration_seconds: int = 0
    no_data_seconds: int | None = None
    severity: Severity = Severity.WARNING

    def checked(self) -> RuleFields:
        """These fields, cleaned; BadInput naming the first field that is wrong."""
        if self.kind == RuleKind.NO_DATA:
            return self._checked_no_data()
        return self._checked_threshold()

    def _checked_threshold(self) -> RuleFields:
        if self.metric is None:
            raise BadInput("metric", "is required")
        metric = clean_text(self.metric, field="metric", max_length=MAX_METRIC_LENGTH)
        for name, bound in (("min", self.min), ("max", self.max)):
            if bound is not None and not math.isfinite(bound):
                raise BadInput(name, "must be a finite number")
        if self.min is None and self.max is None:
            raise BadInput("min", "at least one of min and max is required")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise BadInput("min", "must not be greater than max")
        if not math.isfinite(self.hysteresis) or self.hysteresis < 0:
            raise BadInput("hysteresis", "must be a finite number >= 0")
        if (
            self.min is not None
            and self.max is not None
            and 2 * self.hysteresis > self.max - self.min
        ):
            # [min + h, max - h] would be empty: the alert could never clear itself.
            raise BadInput("hysteresis", "must be at most half of max - min")
        if not 0 <= self.duration_seconds <= MAX_SECONDS:
            raise BadInput("durationSeconds", f"must be 0 to {MAX_SECONDS}")
        if self.no_data_seconds is not None:
            raise BadInput("noDataSeconds", "applies to no-data rules only")
        return replace(self, metric=metric)

    def _checked_no_data(self) -> RuleFields:
        if self.metric is not None:
            raise BadInput("metric", "a no-data rule watches the whole device")
        if self.min is not None or self.max is not None:
            raise BadInput("min", "a no-data rule has no min or max")
        if self.hysteresis or self.duration_seconds:
            raise BadInput("hysteresis", "a no-data rule has no hysteresis or duration")
        if self.no_data_seconds is None or not 1 <= self.no_data_seconds <= MAX_SECONDS:
            raise BadInput("noDataSeconds", f"must be 1 to {MAX_SECONDS}")
        return self


def _visible_to(viewer: User) -> dict[str, Any]:
    return {} if viewer.role == Role.ADMIN else {"owner_id": viewer.id}


def _fields_of(rule: AlertRule) -> RuleFields:
    return RuleFields(
        kind=rule.kind,
        metric=rule.metric,
        min=rule.min_value,
        max=rule.max_value,
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
    viewer: User, device_id: str, fields: RuleFields, *, settings: Settings, redis: Redis
) -> AlertRule:
    """A new enabled rule on a device the viewer may see; it belongs to the device's owner."""
    device = await get_device(viewer, device_id)
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
        device_id=device.id,
        kind=checked.kind,
        metric=checked.metric,
        min_value=checked.min,
        max_value=checked.max,
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
    filters = _visible_to(viewer)
    if device_id is not None:
        filters["device_id"] = (await get_device(viewer, device_id)).id
    return await AlertRule.find(filters).sort("-_id").to_list()


async def get_rule(viewer: User, rule_id: str) -> AlertRule:
    """One rule the viewer may see; NotFound for a missing or foreign one alike."""
    query = {"_id": parse_id(rule_id, kind="alert rule"), **_visible_to(viewer)}
    return ensure_found(await AlertRule.find_one(query), "Alert rule")


async def update_rule(
    viewer: User, rule_id: str, changes: Mapping[str, Any], *, redis: Redis
) -> AlertRule:
    """Change some of a rule's settings (checked together with the rest). Disabling it
    clears its open alert; enabling it (or changing noDataSeconds) re-arms it."""
    unknown = set(changes) - UPDATABLE
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    rule = await get_rule(viewer, rule_id)
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
        "min_value": merged.min,
        "max_value": merged.max,
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
    query = {"_id": parse_id(rule_id, kind="alert rule"), **_visible_to(viewer)}
    raw = await AlertRule.get_pymongo_collection().find_one_and_delete(query)
    if raw is None:
        raise NotFound("Alert rule")
    await close_rule_alert(rule_open_key(raw["_id"]), by="rule_deleted", redis=redis)
    await notify_rule_change(redis, raw["device_id"])
    logger.info("alert rule %s deleted by user %s", raw["_id"], viewer.id)


def _api_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)
