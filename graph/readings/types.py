"""GraphQL types of telemetry readings."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry

from core.events import ReadingEvent, StatusEvent
from graph.pagination import Edge, PageInfo
from live.sharing import shareable
from models.devices import DeviceStatus, LatestReading
from models.readings import Reading as ReadingDocument
from services.readings import Bucket, ReadingPage


@shareable
@strawberry.type
class MetricValue:
    metric: str
    value: float
    unit: str | None


@shareable
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

    @classmethod
    def from_latest(cls, device_id: str, latest: LatestReading) -> Self:
        return cls(
            device_id=strawberry.ID(device_id),
            timestamp=latest.timestamp,
            anomaly=latest.anomaly,
            values=[
                MetricValue(metric=v.metric, value=v.value, unit=v.unit) for v in latest.values
            ],
        )

    @classmethod
    def from_event(cls, event: ReadingEvent) -> Self:
        return cls(
            device_id=strawberry.ID(event.device_id),
            timestamp=event.timestamp,
            anomaly=event.anomaly,
            values=[
                MetricValue(metric=metric, value=value, unit=unit)
                for metric, value, unit in event.values
            ],
        )


@strawberry.type(description="Newest first; no total: counting a time series is a scan.")
class ReadingConnection:
    edges: list[Edge[Reading]]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: ReadingPage) -> Self:
        return cls(
            edges=[
                Edge(cursor=cursor, node=Reading.from_document(item))
                for cursor, item in zip(page.cursors, page.items, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )


@strawberry.type(description="One metric over one time bucket: only non-empty buckets exist.")
class AggregateBucket:
    start: datetime
    count: int
    min: float
    max: float
    avg: float

    @classmethod
    def from_bucket(cls, bucket: Bucket) -> Self:
        return cls(
            start=bucket.start,
            count=bucket.count,
            min=bucket.min,
            max=bucket.max,
            avg=bucket.avg,
        )


@shareable
@strawberry.type(description="A device's new status, straight from the live event.")
class DeviceStatusUpdate:
    id: strawberry.ID
    status: DeviceStatus
    last_seen: datetime | None

    @classmethod
    def from_event(cls, event: StatusEvent) -> Self:
        return cls(
            id=strawberry.ID(event.device_id),
            status=DeviceStatus(event.status),
            last_seen=event.last_seen,
        )
