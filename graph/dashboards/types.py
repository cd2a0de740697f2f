"""GraphQL types of dashboards; config is JSON following docs/dashboards.md."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry
from strawberry.scalars import JSON

from models.dashboards import Dashboard as DashboardDocument

CONFIG_DESCRIPTION = (
    "Widget layout: {layout: {columns}, widgets: [...]}, the schema of docs/dashboards.md."
)


@strawberry.type
class Dashboard:
    id: strawberry.ID
    name: str
    config: JSON = strawberry.field(description=CONFIG_DESCRIPTION)
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, dashboard: DashboardDocument) -> Self:
        return cls(
            id=strawberry.ID(str(dashboard.id)),
            name=dashboard.name,
            config=JSON(dashboard.config),
            created_at=dashboard.created_at,
            updated_at=dashboard.updated_at,
        )


@strawberry.input
class CreateDashboardInput:
    name: str
    config: JSON = strawberry.field(description=CONFIG_DESCRIPTION)
    organization_id: strawberry.ID | None = strawberry.field(
        default=None, description="Omitted: the caller's personal organization."
    )


@strawberry.input
class UpdateDashboardInput:
    name: str | None = None
    config: JSON | None = strawberry.field(
        default=None, description="A new config, replacing the old one whole."
    )
