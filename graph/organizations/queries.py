"""Queries of the organizations domain."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.organizations.types import Organization
from services import organizations


@strawberry.type
class OrganizationQuery:
    @strawberry.field(description="The caller's organizations (its personal one first).")
    async def organizations(self, info: Info) -> list[Organization]:
        viewer = await info.context.require_user()
        found = await organizations.list_organizations(viewer)
        return [Organization.from_document(organization) for organization in found]
