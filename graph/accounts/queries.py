"""Queries of the accounts domain."""

from __future__ import annotations

import strawberry

from graph.accounts.types import User
from graph.context import Info
from graph.pagination import Connection
from services import accounts


@strawberry.type
class AccountQuery:
    @strawberry.field(description="The authenticated caller.")
    async def me(self, info: Info) -> User:
        return User.from_document(await info.context.require_user())

    @strawberry.field(description="Every user, oldest first. ADMIN only.")
    async def users(
        self, info: Info, first: int | None = None, after: str | None = None
    ) -> Connection[User]:
        viewer = await info.context.require_user()
        size = info.context.page_size(first)
        page = await accounts.list_users(viewer, first=size, after=after)
        return Connection[User].from_page(page, User.from_document)

    @strawberry.field(description="The caller itself, or anyone for an ADMIN.")
    async def user(self, info: Info, id: strawberry.ID) -> User:
        viewer = await info.context.require_user()
        return User.from_document(await accounts.get_user(viewer, id))
