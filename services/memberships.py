"""A user's organizations as a principal carries them, and its personal organization.

Kept apart from services.organizations (the operations) so that services.accounts can
load memberships with the user and make the personal organization at registration.
"""

from __future__ import annotations

import logging
from typing import Final

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError

from models.accounts import MemberRole, User
from models.organizations import Member, Organization
from services.errors import NotFound

logger = logging.getLogger(__name__)

PERSONAL_NAME: Final = "Personal"


async def memberships_of(user_id: PydanticObjectId) -> dict[str, MemberRole]:
    """{organization id (str): role} of every organization `user_id` is a member of:
    one query on the members.user_id index, only the user's own entry of each."""
    found: dict[str, MemberRole] = {}
    cursor = Organization.get_pymongo_collection().find(
        {"members.user_id": user_id}, {"members": {"$elemMatch": {"user_id": user_id}}}
    )
    async for raw in cursor:
        for member in raw.get("members", ()):
            if member.get("user_id") == user_id:
                found[str(raw["_id"])] = MemberRole(member["role"])
    return found


async def load_memberships(user: User) -> User:
    """`user` with its memberships loaded (models.accounts.User.memberships): what the
    access decision (services.access) reads. Call it for every principal."""
    if user.id is not None:
        user.set_memberships(await memberships_of(user.id))
    return user


def personal_organization(user_id: PydanticObjectId) -> Organization:
    """The personal organization of `user_id`: its id is the user's, its only OWNER."""
    return Organization(
        id=user_id,
        name=PERSONAL_NAME,
        personal_of=user_id,
        members=[Member(user_id=user_id, role=MemberRole.OWNER)],
    )


async def ensure_personal_organization(user: User) -> None:
    """Make `user`'s personal organization unless it exists (idempotent: its _id is the
    user's, so a second attempt, here or by the migration, is a duplicate key)."""
    if user.id is None:
        raise ValueError("the user must be stored first")
    try:
        await personal_organization(user.id).insert()
    except DuplicateKeyError:
        return
    logger.info("personal organization made for user %s", user.id)


async def ensure_organization_exists(organization_id: PydanticObjectId) -> None:
    """NotFound unless the organization exists (an ADMIN may name any id: an id that
    passes the access decision without a membership must still name one)."""
    found = await Organization.get_pymongo_collection().find_one(
        {"_id": organization_id}, {"_id": 1}
    )
    if found is None:
        raise NotFound("Organization")


async def ensure_personal_membership(user: User) -> None:
    """Before using `user`'s personal organization: make it if registration stopped
    before it did (a crash between the two inserts), then reload the memberships. No
    query when the user is a member of it, as it is from registration on."""
    if user.id is None or str(user.id) in user.memberships:
        return
    await ensure_personal_organization(user)
    await load_memberships(user)
