"""Beanie documents, one module per collection family."""

from beanie import Document

from models.accounts import RefreshToken, Role, User
from models.dashboards import Dashboard
from models.devices import Device, DeviceStatus
from models.platform import Marker
from models.readings import MetricValue, Reading

DOCUMENT_MODELS: list[type[Document]] = [User, RefreshToken, Device, Marker, Reading, Dashboard]

__all__ = [
    "DOCUMENT_MODELS",
    "Dashboard",
    "Device",
    "DeviceStatus",
    "Marker",
    "MetricValue",
    "Reading",
    "RefreshToken",
    "Role",
    "User",
]
