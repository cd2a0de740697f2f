"""Mutations of accounts by e-mail link: password reset and address verification."""

from __future__ import annotations

import strawberry

from graph.accounts.types import User
from graph.context import Info
from services import email_verification, password_reset


@strawberry.type
class EmailAccountMutation:
    @strawberry.mutation(
        description=(
            "Always true (never reveals whether the e-mail is known); when it is, an e-mail "
            "with a single-use reset token (valid 1 hour) is sent."
        )
    )
    async def request_password_reset(self, info: Info, email: str) -> bool:
        ctx = info.context
        await password_reset.request_password_reset(
            email, client_address=ctx.client_address, settings=ctx.settings, redis=ctx.redis
        )
        return True

    @strawberry.mutation(
        description=(
            "Sets the password and ends every session of the user; the token works once "
            "(UNAUTHENTICATED for a bad, used or expired one)."
        )
    )
    async def reset_password(self, info: Info, token: str, password: str) -> bool:
        ctx = info.context
        await password_reset.reset_password(token, password, settings=ctx.settings, bus=ctx.bus)
        return True

    @strawberry.mutation(description="Confirm the address a verification e-mail went to.")
    async def verify_email(self, token: str) -> User:
        return User.from_document(await email_verification.verify_email(token))
