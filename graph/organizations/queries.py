"""Queries of the organizations domain."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.organizations.types import Organization
from services import organizations


@strawberry.type
class OrganizationQuery:
    @strawberry.field(description="The organizations the caller is a member of, oldest first.")
    async def organizations(self, info: Info) -> list[Organization]:
        viewer = await info.context.require_user()
        found = await organizations.list_organizations(viewer)
        return [Organization.from_document(organization) for organization in found]
