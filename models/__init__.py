"""Beanie documents, one module per collection family."""

from beanie import Document

from models.accounts import RefreshToken, Role, User
from models.alerts import Alert, AlertRule, NotificationWebhook
from models.api_keys import ApiKey, ApiKeyScope
from models.audit import AuditEntry
from models.commands import Command, CommandState
from models.dashboards import Dashboard
from models.device_logs import DeviceLog, LogLevel
from models.devices import Device, DeviceStatus
from models.email import AlertReminder, EmailToken, NotificationPreferences, OutboxMail
from models.firmware import Firmware, FirmwareUpdate, FirmwareUpdateTarget
from models.organizations import Organization
from models.platform import Marker
from models.readings import MetricValue, Reading
from models.rollups import HourRollup, MinuteRollup, RollupPending
from models.twins import DeviceTwin

DOCUMENT_MODELS: list[type[Document]] = [
    User,
    RefreshToken,
    Device,
    Marker,
    Reading,
    MinuteRollup,
    HourRollup,
    RollupPending,
    Dashboard,
    AlertRule,
    Alert,
    NotificationWebhook,
    Firmware,
    FirmwareUpdate,
    FirmwareUpdateTarget,
    DeviceLog,
    DeviceTwin,
    ApiKey,
    AuditEntry,
    Command,
    EmailToken,
    OutboxMail,
    NotificationPreferences,
    AlertReminder,
    Organization,
]

__all__ = [
    "DOCUMENT_MODELS",
    "Alert",
    "AlertReminder",
    "AlertRule",
    "ApiKey",
    "ApiKeyScope",
    "AuditEntry",
    "Command",
    "CommandState",
    "Dashboard",
    "Device",
    "DeviceLog",
    "DeviceStatus",
    "DeviceTwin",
    "EmailToken",
    "Firmware",
    "FirmwareUpdate",
    "FirmwareUpdateTarget",
    "HourRollup",
    "LogLevel",
    "Marker",
    "MetricValue",
    "MinuteRollup",
    "NotificationPreferences",
    "NotificationWebhook",
    "OutboxMail",
    "Reading",
    "RefreshToken",
    "Role",
    "RollupPending",
    "User",
]
