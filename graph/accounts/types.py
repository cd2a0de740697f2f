"""GraphQL types of users and sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry

from models.accounts import Role
from models.accounts import User as UserDocument
from services.accounts import AuthSession

# The document's enum is the GraphQL enum: one list of roles, not two to keep equal.
strawberry.enum(Role)


@strawberry.type
class User:
    id: strawberry.ID
    email: str
    role: Role
    created_at: datetime
    email_verified: bool = strawberry.field(
        description="Confirmed by the link of a verification e-mail (verifyEmail)."
    )

    @classmethod
    def from_document(cls, user: UserDocument) -> Self:
        return cls(
            id=strawberry.ID(str(user.id)),
            email=user.email,
            role=user.role,
            created_at=user.created_at,
            email_verified=user.email_verified,
        )


@strawberry.type
class AuthPayload:
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int = strawberry.field(description="Access token lifetime in seconds.")
    user: User

    @classmethod
    def from_session(cls, session: AuthSession, *, expires_in: int) -> Self:
        return cls(
            access_token=session.access.token,
            refresh_token=session.refresh_token,
            token_type="Bearer",  # noqa: S106 - the scheme name
            expires_in=expires_in,
            user=User.from_document(session.user),
        )


@strawberry.input
class RegisterInput:
    email: str
    password: str


@strawberry.input
class LoginInput:
    email: str
    password: str


@strawberry.input
class UpdateUserInput:
    email: str | None = None
    password: str | None = None
    role: Role | None = None
    current_password: str | None = strawberry.field(
        default=None,
        description="Required when changing one's own e-mail or password.",
    )
