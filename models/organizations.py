"""Organizations: the unit of tenancy, and their members (docs/access.md)."""

from __future__ import annotations

from datetime import datetime

import pymongo
from beanie import Document, PydanticObjectId
from pydantic import BaseModel, Field

from models.accounts import MemberRole, utcnow


class Member(BaseModel):
    user_id: PydanticObjectId
    role: MemberRole
    added_at: datetime = Field(default_factory=utcnow)


__all__ = ["Member", "MemberRole", "Organization"]


class Organization(Document):
    """One organization with its members embedded: "members of org" is this document,
    and a change of members (add, remove, the last OWNER's guard) is one atomic update
    of it. "Organizations of a user" is the multikey index on members.user_id.

    A user's personal organization has the user's own id as its _id: made at
    registration (or by the start-up migration for users stored before organizations),
    idempotently, as a duplicate _id; and a device stored with only its owner_id belongs
    to the organization of that id.
    """

    name: str
    # The user whose personal organization this is (its _id is theirs); None otherwise.
    personal_of: PydanticObjectId | None = None
    members: list[Member] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "organizations"
        indexes = [
            pymongo.IndexModel([("members.user_id", pymongo.ASCENDING)]),
        ]
