"""Mutations of the dashboards domain."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.dashboards.types import CreateDashboardInput, Dashboard, UpdateDashboardInput
from services import dashboards


@strawberry.type
class DashboardMutation:
    @strawberry.mutation(description="Create a dashboard of the caller's.")
    async def create_dashboard(self, info: Info, input: CreateDashboardInput) -> Dashboard:
        owner = await info.context.require_user()
        dashboard = await dashboards.create_dashboard(
            owner,
            name=input.name,
            config=input.config,
            settings=info.context.settings,
            organization_id=input.organization_id,
        )
        return Dashboard.from_document(dashboard)

    @strawberry.mutation(description="Rename a dashboard and/or replace its config.")
    async def update_dashboard(
        self, info: Info, id: strawberry.ID, input: UpdateDashboardInput
    ) -> Dashboard:
        viewer = await info.context.require_user()
        dashboard = await dashboards.update_dashboard(
            viewer, id, name=input.name, config=input.config, settings=info.context.settings
        )
        return Dashboard.from_document(dashboard)

    @strawberry.mutation
    async def delete_dashboard(self, info: Info, id: strawberry.ID) -> bool:
        viewer = await info.context.require_user()
        await dashboards.delete_dashboard(viewer, id)
        return True
