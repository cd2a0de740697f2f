"""Alert rules, the alerts they raise, and each user's notification webhook."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field

from models.accounts import utcnow


class Severity(StrEnum):
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


class AlertState(StrEnum):
    ACTIVE = "ACTIVE"
    ACKNOWLEDGED = "ACKNOWLEDGED"
    CLEARED = "CLEARED"


# An alert is open (it blocks a second one of the same key) until it is cleared.
OPEN_STATES = (AlertState.ACTIVE.value, AlertState.ACKNOWLEDGED.value)


class RuleKind(StrEnum):
    THRESHOLD = "THRESHOLD"  # a metric left [min, max]
    NO_DATA = "NO_DATA"  # the device sent nothing for no_data_seconds


class AlertKind(StrEnum):
    THRESHOLD = "THRESHOLD"
    NO_DATA = "NO_DATA"
    ANOMALY = "ANOMALY"


class AlertRule(Document):
    """One rule on one device; it belongs to the device's organization."""

    # The device's owner (who registered it) when the rule was made.
    owner_id: PydanticObjectId
    # The device's organization: access is decided on it. Before organizations, the
    # owner's personal one (its id is the owner's).
    organization_id: PydanticObjectId = Field(default_factory=lambda data: data["owner_id"])
    device_id: PydanticObjectId
    kind: RuleKind = RuleKind.THRESHOLD
    # None for a NO_DATA rule: it watches the device, not one metric.
    metric: str | None = None
    # Not "min"/"max": those are Document's aggregation methods.
    min_value: float | None = None
    max_value: float | None = None
    # An open alert clears only once the value is back inside by this margin.
    hysteresis: float = 0.0
    # Raise only once the value has stayed out of range this long (reading timestamps).
    duration_seconds: int = 0
    no_data_seconds: int | None = None
    severity: Severity = Severity.WARNING
    enabled: bool = True
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    # Since when a NO_DATA rule watches: creation, or the last enable / change of seconds.
    armed_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "alert_rules"
        indexes = [
            pymongo.IndexModel(
                [("organization_id", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)]
            ),
            pymongo.IndexModel([("device_id", pymongo.ASCENDING)]),
        ]


def rule_open_key(rule_id: object) -> str:
    """The open-alert key of a rule (a rule belongs to one device)."""
    return f"rule:{rule_id}"


class Alert(Document):
    # The owning user of alerts stored before organizations; new alerts carry only
    # organization_id (the device's organization, on which access is decided).
    owner_id: PydanticObjectId | None = None
    organization_id: PydanticObjectId = Field(default_factory=lambda data: data["owner_id"])
    device_id: PydanticObjectId
    # None for anomaly alerts, which no rule raises.
    rule_id: PydanticObjectId | None = None
    kind: AlertKind
    metric: str | None = None
    value: float | None = None
    message: str
    severity: Severity
    state: AlertState = AlertState.ACTIVE
    raised_at: datetime = Field(default_factory=utcnow)
    acknowledged_at: datetime | None = None
    cleared_at: datetime | None = None
    # Who cleared it: "rule" (the value came back), "user", "rule_deleted", "rule_disabled".
    cleared_by: str | None = None
    # Present only while the alert is open: a unique index on it is what makes "one open
    # alert per rule and device" hold across any number of workers.
    open_key: str | None = None

    class Settings:
        name = "alerts"
        # None fields are not written: an alert without open_key must be absent from the
        # sparse index below (a null would be indexed, and collide with the next null).
        keep_nulls = False
        indexes = [
            # Sparse: equality queries on open_key (raise, clear) use it, which a partial
            # index on {$type: "string"} would not guarantee.
            pymongo.IndexModel(
                [("open_key", pymongo.ASCENDING)], name="one_open_alert", unique=True, sparse=True
            ),
            pymongo.IndexModel(
                [("organization_id", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)]
            ),
            pymongo.IndexModel(
                [
                    ("organization_id", pymongo.ASCENDING),
                    ("state", pymongo.ASCENDING),
                    ("_id", pymongo.DESCENDING),
                ]
            ),
            pymongo.IndexModel([("device_id", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)]),
        ]


class NotificationWebhook(Document):
    """Where a user's raised alerts are POSTed. The signing secret is not stored: it is
    derived from a server key and `secret_nonce` (services.webhooks.webhook_secret)."""

    # Who set it (its secret is derived with this id).
    user_id: Annotated[PydanticObjectId, Indexed(unique=True)]
    # The organization whose alerts it receives: the user's personal one (its id is the
    # user's), which the start-up migration stores for webhooks set before.
    organization_id: PydanticObjectId = Field(default_factory=lambda data: data["user_id"])
    url: str
    secret_nonce: str
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "notification_webhooks"
        indexes = [pymongo.IndexModel([("organization_id", pymongo.ASCENDING)])]
