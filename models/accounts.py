"""Users and their refresh tokens."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field, PrivateAttr


def utcnow() -> datetime:
    """Now, timezone-aware, at the millisecond precision MongoDB keeps."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


class Role(StrEnum):
    USER = "USER"
    ADMIN = "ADMIN"


class MemberRole(StrEnum):
    """A user's role in an organization (models.organizations)."""

    OWNER = "OWNER"  # everything, members included
    OPERATOR = "OPERATOR"  # devices, commands, twins, rules, dashboards
    VIEWER = "VIEWER"  # read and subscribe only


class User(Document):
    email: Annotated[str, Indexed(unique=True)]
    password_hash: str
    role: Role = Role.USER
    created_at: datetime = Field(default_factory=utcnow)
    # Access tokens carry the value they were issued under; logging out (and so a new
    # password) moves it on, which ends every access token issued before at once.
    session_version: int = 0
    # Confirmed by the link of a verification e-mail (services/email_verification.py);
    # alert e-mails go to verified addresses only. Users from before e-mail: False.
    email_verified: bool = False
    # Its organizations and its role in each, {organization id (str): role}: not stored
    # here (models.organizations holds members) but loaded with the user as a principal
    # (services.organizations.load_memberships); empty until loaded.
    _memberships: dict[str, MemberRole] = PrivateAttr(default_factory=dict)

    @property
    def memberships(self) -> Mapping[str, MemberRole]:
        return self._memberships

    def set_memberships(self, memberships: Mapping[str, MemberRole]) -> None:
        self._memberships = dict(memberships)

    class Settings:
        name = "users"


class RefreshToken(Document):
    """One opaque refresh token, stored as its SHA-256; a family is one login's chain."""

    token_hash: Annotated[str, Indexed(unique=True)]
    user_id: PydanticObjectId
    family_id: str
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)
    used_at: datetime | None = None
    revoked_at: datetime | None = None

    class Settings:
        name = "refresh_tokens"
        indexes = [
            pymongo.IndexModel([("user_id", pymongo.ASCENDING)]),
            pymongo.IndexModel([("family_id", pymongo.ASCENDING)]),
        ]
