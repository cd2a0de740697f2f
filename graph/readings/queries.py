"""Queries of the readings domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from graph.context import Info
from graph.readings.types import AggregateBucket, ReadingConnection
from services import readings


@strawberry.type
class ReadingQuery:
    @strawberry.field(
        description="A device's readings, newest first; from inclusive, to exclusive."
    )
    async def readings(
        self,
        info: Info,
        device_id: strawberry.ID,
        from_: Annotated[datetime | None, strawberry.argument(name="from")] = None,
        to: datetime | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> ReadingConnection:
        viewer = await info.context.require_user()
        size = info.context.page_size(first)
        page = await readings.list_readings(
            viewer, device_id, start=from_, end=to, first=size, after=after
        )
        return ReadingConnection.from_page(page)

    @strawberry.field(
        description='One metric per non-empty time bucket ("10s", "1m", "15m", "1h", "1d"), '
        "oldest first; from inclusive, to exclusive."
    )
    async def aggregate(
        self,
        info: Info,
        device_id: strawberry.ID,
        metric: str,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        bucket: str,
    ) -> list[AggregateBucket]:
        viewer = await info.context.require_user()
        buckets = await readings.aggregate(
            viewer,
            device_id,
            metric=metric,
            start=from_,
            end=to,
            bucket=bucket,
            max_buckets=info.context.settings.aggregate_max_buckets,
        )
        return [AggregateBucket.from_bucket(bucket) for bucket in buckets]
