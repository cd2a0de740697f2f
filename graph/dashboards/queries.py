"""Queries of the dashboards domain."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.dashboards.types import Dashboard
from services import dashboards


@strawberry.type
class DashboardQuery:
    @strawberry.field(description="The caller's own dashboards, newest first.")
    async def dashboards(self, info: Info) -> list[Dashboard]:
        viewer = await info.context.require_user()
        return [Dashboard.from_document(d) for d in await dashboards.list_dashboards(viewer)]

    @strawberry.field(description="One of the caller's own dashboards.")
    async def dashboard(self, info: Info, id: strawberry.ID) -> Dashboard:
        viewer = await info.context.require_user()
        return Dashboard.from_document(await dashboards.get_dashboard(viewer, id))
