"""Telemetry readings in a MongoDB time-series collection."""

from __future__ import annotations

from datetime import datetime

from beanie import Document, Granularity, PydanticObjectId, TimeSeriesConfig
from pydantic import BaseModel


class MetricValue(BaseModel):
    # A list of these, not a dict keyed by metric: metric names may contain dots.
    metric: str
    value: float
    unit: str | None = None


class Reading(Document):
    device_id: PydanticObjectId
    timestamp: datetime
    values: list[MetricValue]
    anomaly: bool = False
    # Which MQTT delivery stored this reading: lets a redelivered message be recognised.
    source: str | None = None

    class Settings:
        name = "readings"
        timeseries = TimeSeriesConfig(
            time_field="timestamp", meta_field="device_id", granularity=Granularity.seconds
        )
