"""Beanie documents, one module per collection family."""

from beanie import Document

from models.accounts import RefreshToken, Role, User
from models.alerts import Alert, AlertRule, NotificationWebhook
from models.dashboards import Dashboard
from models.device_logs import DeviceLog, LogLevel
from models.devices import Device, DeviceStatus
from models.firmware import Firmware, FirmwareUpdate, FirmwareUpdateTarget
from models.organizations import Organization
from models.platform import Marker
from models.readings import MetricValue, Reading
from models.twins import DeviceTwin

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
    DeviceLog,
    DeviceTwin,
    Organization,
]

__all__ = [
    "DOCUMENT_MODELS",
    "Alert",
    "AlertRule",
    "Dashboard",
    "Device",
    "DeviceLog",
    "DeviceStatus",
    "DeviceTwin",
    "Firmware",
    "FirmwareUpdate",
    "FirmwareUpdateTarget",
    "LogLevel",
    "Marker",
    "MetricValue",
    "NotificationWebhook",
    "Reading",
    "RefreshToken",
    "Role",
    "User",
]
