"""Mutations of the accounts domain."""

from __future__ import annotations

import strawberry

from graph.accounts.types import AuthPayload, LoginInput, RegisterInput, UpdateUserInput, User
from graph.context import Info
from services import accounts


@strawberry.type
class AccountMutation:
    @strawberry.mutation(description="Create a USER; the first user ever becomes ADMIN.")
    async def register(self, info: Info, input: RegisterInput) -> AuthPayload:
        ctx = info.context
        session = await accounts.register(
            input.email,
            input.password,
            client_address=ctx.client_address,
            settings=ctx.settings,
            redis=ctx.redis,
        )
        return AuthPayload.from_session(session, expires_in=ctx.settings.access_token_ttl_seconds)

    @strawberry.mutation
    async def login(self, info: Info, input: LoginInput) -> AuthPayload:
        ctx = info.context
        session = await accounts.login(
            input.email,
            input.password,
            client_address=ctx.client_address,
            settings=ctx.settings,
            redis=ctx.redis,
        )
        return AuthPayload.from_session(session, expires_in=ctx.settings.access_token_ttl_seconds)

    @strawberry.mutation(description="Rotate a refresh token; reusing one revokes its family.")
    async def refresh_token(self, info: Info, refresh_token: str) -> AuthPayload:
        settings = info.context.settings
        session = await accounts.refresh(refresh_token, settings=settings)
        return AuthPayload.from_session(session, expires_in=settings.access_token_ttl_seconds)

    @strawberry.mutation(description="Revoke the caller's refresh tokens.")
    async def logout(self, info: Info) -> bool:
        await accounts.logout(await info.context.require_user())
        return True

    @strawberry.mutation(
        description=("Own e-mail/password (with currentPassword); only an ADMIN may change a role.")
    )
    async def update_user(self, info: Info, id: strawberry.ID, input: UpdateUserInput) -> User:
        viewer = await info.context.require_user()
        user = await accounts.update_user(
            viewer,
            id,
            email=input.email,
            password=input.password,
            role=input.role,
            current_password=input.current_password,
            settings=info.context.settings,
            bus=info.context.bus,
        )
        return User.from_document(user)
