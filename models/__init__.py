"""Beanie documents, one module per collection family."""

from beanie import Document

from models.accounts import RefreshToken, Role, User
from models.alerts import Alert, AlertRule, NotificationWebhook
from models.commands import Command, CommandState
from models.dashboards import Dashboard
from models.devices import Device, DeviceStatus
from models.firmware import Firmware, FirmwareUpdate, FirmwareUpdateTarget
from models.platform import Marker
from models.readings import MetricValue, Reading

DOCUMENT_MODELS: list[type[Document]] = [
    User,
    RefreshToken,
    Device,
    Marker,
    Reading,
    Dashboard,
    AlertRule,
    Alert,
    NotificationWebhook,
    Firmware,
    FirmwareUpdate,
    FirmwareUpdateTarget,
    Command,
]

__all__ = [
    "DOCUMENT_MODELS",
    "Alert",
    "AlertRule",
    "Command",
    "CommandState",
    "Dashboard",
    "Device",
    "DeviceStatus",
    "Firmware",
    "FirmwareUpdate",
    "FirmwareUpdateTarget",
    "Marker",
    "MetricValue",
    "NotificationWebhook",
    "Reading",
    "RefreshToken",
    "Role",
    "User",
]
