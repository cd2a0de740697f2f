"""Mutations of the organizations domain."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.organizations.types import Organization
from models.accounts import MemberRole
from services import organizations


@strawberry.type
class OrganizationMutation:
    @strawberry.mutation(description="A new organization; the caller is its OWNER.")
    async def create_organization(self, info: Info, name: str) -> Organization:
        viewer = await info.context.require_user()
        return Organization.from_document(await organizations.create_organization(viewer, name))

    @strawberry.mutation(
        description="Add a registered user as a member, or change its role. OWNER only."
    )
    async def add_member(
        self, info: Info, organization_id: strawberry.ID, email: str, role: MemberRole
    ) -> Organization:
        viewer = await info.context.require_user()
        organization = await organizations.add_member(
            viewer, organization_id, email, role, bus=info.context.bus
        )
        return Organization.from_document(organization)

    @strawberry.mutation(
        description="Remove a member (its access ends at once). OWNER only; "
        "the last OWNER cannot be removed."
    )
    async def remove_member(
        self, info: Info, organization_id: strawberry.ID, user_id: strawberry.ID
    ) -> Organization:
        viewer = await info.context.require_user()
        organization = await organizations.remove_member(
            viewer, organization_id, user_id, bus=info.context.bus
        )
        return Organization.from_document(organization)
