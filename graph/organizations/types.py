"""GraphQL types of organizations and their members."""

from __future__ import annotations

from typing import Self

import strawberry
from beanie import PydanticObjectId

from graph.accounts.types import User
from graph.context import Info
from models.accounts import MemberRole
from models.organizations import Organization as OrganizationDocument

# The document's enum is the GraphQL enum, as Role's is.
strawberry.enum(MemberRole)


@strawberry.type
class Member:
    role: MemberRole
    user_id: strawberry.Private[PydanticObjectId]

    @strawberry.field
    async def user(self, info: Info) -> User:
        user = await info.context.loaders.users.load(self.user_id)
        if user is None:  # removed under us
            raise LookupError(f"member {self.user_id} is missing")
        return User.from_document(user)


@strawberry.type
class Organization:
    id: strawberry.ID
    name: str
    members: list[Member]

    @strawberry.field(description="The caller's role here; null when not a member (an ADMIN).")
    async def my_role(self, info: Info) -> MemberRole | None:
        viewer = await info.context.require_user()
        return viewer.memberships.get(str(self.id))

    @classmethod
    def from_document(cls, organization: OrganizationDocument) -> Self:
        return cls(
            id=strawberry.ID(str(organization.id)),
            name=organization.name,
            members=[
                Member(role=member.role, user_id=member.user_id) for member in organization.members
            ],
        )
