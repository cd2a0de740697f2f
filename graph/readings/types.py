"""GraphQL types of telemetry readings."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry

from models.readings import Reading as ReadingDocument


@strawberry.type
class MetricValue:
    metric: str
    value: float
    unit: str | None


@strawberry.type
class Reading:
    device_id: strawberry.ID
    timestamp: datetime
    anomaly: bool
    values: list[MetricValue]

    @classmethod
    def from_document(cls, reading: ReadingDocument) -> Self:
        return cls(
            device_id=strawberry.ID(str(reading.device_id)),
            timestamp=reading.timestamp,
            anomaly=reading.anomaly,
            values=[
                MetricValue(metric=v.metric, value=v.value, unit=v.unit) for v in reading.values
            ],
        )
