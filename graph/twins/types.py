"""GraphQL type of a device twin (built from a stored twin or a live event alike)."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry
from strawberry.scalars import JSON

from core.twin_events import TwinEvent
from live.sharing import shareable
from services.twin_documents import delta
from services.twins import Twin


@shareable
@strawberry.type
class DeviceTwin:
    desired: JSON = strawberry.field(description="What users want the device to be.")
    reported: JSON = strawberry.field(description="What the device last said it is.")
    delta: JSON = strawberry.field(
        description="The desired keys whose value differs from reported; objects compared "
        "key by key, recursively (docs/devices.md)."
    )
    version: int = strawberry.field(description="Grows by one on every change of desired.")
    desired_updated_at: datetime | None
    reported_updated_at: datetime | None
    # Grows with every change of either side: the order of live events.
    revision: strawberry.Private[int]

    @classmethod
    def from_twin(cls, twin: Twin) -> Self:
        return cls(
            desired=JSON(twin.desired),
            reported=JSON(twin.reported),
            delta=JSON(twin.delta),
            version=twin.version,
            desired_updated_at=twin.desired_updated_at,
            reported_updated_at=twin.reported_updated_at,
            revision=twin.revision,
        )

    @classmethod
    def from_event(cls, event: TwinEvent) -> Self:
        return cls(
            desired=JSON(event.desired),
            reported=JSON(event.reported),
            delta=JSON(delta(event.desired, event.reported)),
            version=event.version,
            desired_updated_at=event.desired_updated_at,
            reported_updated_at=event.reported_updated_at,
            revision=event.revision,
        )
