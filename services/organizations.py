"""Organizations and their members: create, list, add and remove members (OWNER only).

Members are embedded in the organization's document (models.organizations), so every
change of members is one atomic, conditional update: "the user is not a member yet",
"another OWNER remains". A change of a user's membership closes that user's WebSockets
in every API process (services.accounts.announce_revoked): a live feed keeps the
memberships it was opened with, so a removed member's open subscriptions end at once;
its HTTP requests load the memberships afresh (services.memberships).
"""

from __future__ import annotations

import logging
from typing import Final

from beanie import PydanticObjectId

from live.bus import Bus
from models.accounts import MemberRole, User
from models.organizations import Member, Organization
from services import access
from services.accounts import announce_revoked
from services.errors import Conflict, NotFound, QuotaExceeded
from services.validation import clean_text, ensure_found, normalise_email, parse_id

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH: Final = 100
# Members are embedded: the bound keeps an organization's document far below 16 MiB.
MAX_MEMBERS: Final = 1000
# Organizations one user may be OWNER of (its personal one included).
MAX_OWNED: Final = 100
LAST_OWNER: Final = "The last OWNER of an organization cannot be removed or demoted."


def _owns(user_id: PydanticObjectId) -> dict[str, object]:
    return {"members": {"$elemMatch": {"user_id": user_id, "role": MemberRole.OWNER.value}}}


async def create_organization(viewer: User, name: str) -> Organization:
    """A new organization with the caller as its only OWNER."""
    clean_name = clean_text(name, field="name", max_length=MAX_NAME_LENGTH)
    if viewer.id is None:
        raise ValueError("the viewer must be stored")
    if await Organization.find(_owns(viewer.id)).count() >= MAX_OWNED:
        raise QuotaExceeded(f"Organization quota reached: OWNER of at most {MAX_OWNED}.")
    organization = Organization(
        name=clean_name, members=[Member(user_id=viewer.id, role=MemberRole.OWNER)]
    )
    await organization.insert()
    # The caller's principal (this request) knows its new organization at once.
    viewer.set_memberships({**viewer.memberships, str(organization.id): MemberRole.OWNER})
    logger.info("organization %s created by user %s", organization.id, viewer.id)
    return organization


async def list_organizations(viewer: User) -> list[Organization]:
    """The organizations the caller is a member of, oldest first."""
    if viewer.id is None:
        return []
    return await Organization.find({"members.user_id": viewer.id}).sort("_id").to_list()


async def get_organization(
    viewer: User, organization_id: str, *, action: access.Action = "read"
) -> Organization:
    """One organization the caller may see (a member's, or any for an ADMIN): NotFound
    otherwise; Forbidden when it may see it but not `action` (admin: OWNER only)."""
    object_id = parse_id(organization_id, kind="organization", field="organizationId")
    if not access.may(viewer, "read", "organization", object_id):
        raise NotFound("Organization")
    organization = ensure_found(await Organization.get(object_id), "Organization")
    access.require(viewer, action, "organization", organization.id)
    return organization


async def add_member(
    viewer: User, organization_id: str, email: str, role: MemberRole, *, bus: Bus | None
) -> Organization:
    """Add the user with `email` to the organization as `role`, or change its role
    there (OWNER only). NotFound when no user has that address."""
    organization = await get_organization(viewer, organization_id, action="admin")
    target = ensure_found(await User.find_one({"email": normalise_email(email)}), "User")
    collection = Organization.get_pymongo_collection()
    added = await collection.update_one(
        {
            "_id": organization.id,
            "members.user_id": {"$ne": target.id},
            f"members.{MAX_MEMBERS - 1}": {"$exists": False},
        },
        {"$push": {"members": Member(user_id=target.id, role=role).model_dump()}},
    )
    if not added.modified_count:
        await _change_role(organization, target, role)
    logger.info(
        "user %s made %s of organization %s by user %s",
        target.id,
        role.value,
        organization.id,
        viewer.id,
    )
    if bus is not None:
        # Its open WebSockets carry its former memberships: they close.
        await announce_revoked(bus, str(target.id))
    return ensure_found(await Organization.get(organization.id), "Organization")


async def _change_role(organization: Organization, target: User, role: MemberRole) -> None:
    """`target` is a member already (or the organization is full): set its role, never
    leaving the organization without an OWNER."""
    collection = Organization.get_pymongo_collection()
    condition: dict[str, object] = {
        "_id": organization.id,
        "members": {"$elemMatch": {"user_id": target.id}},
    }
    if role is not MemberRole.OWNER:
        # Demoting: another OWNER must remain (checked in the same atomic update).
        condition = {
            "_id": organization.id,
            "$and": [
                {"members": {"$elemMatch": {"user_id": target.id}}},
                {
                    "members": {
                        "$elemMatch": {
                            "user_id": {"$ne": target.id},
                            "role": MemberRole.OWNER.value,
                        }
                    }
                },
            ],
        }
    changed = await collection.update_one(
        condition,
        {"$set": {"members.$[member].role": role.value}},
        array_filters=[{"member.user_id": target.id}],
    )
    if changed.matched_count:
        return
    current = ensure_found(await Organization.get(organization.id), "Organization")
    if all(member.user_id != target.id for member in current.members):
        raise Conflict(f"An organization has at most {MAX_MEMBERS} members.")
    raise Conflict(LAST_OWNER)


async def remove_member(
    viewer: User, organization_id: str, user_id: str, *, bus: Bus | None
) -> Organization:
    """Remove a member (OWNER only); Conflict for the last OWNER. The removed user loses
    access at once, its open subscriptions included."""
    organization = await get_organization(viewer, organization_id, action="admin")
    target_id = parse_id(user_id, kind="user", field="userId")
    if all(member.user_id != target_id for member in organization.members):
        raise NotFound("Member")
    # One atomic update: the member goes only while another OWNER stays (a member that
    # is not an OWNER leaves one; an OWNER leaves only if another exists).
    removed = await Organization.get_pymongo_collection().update_one(
        {
            "_id": organization.id,
            "members": {
                "$elemMatch": {"user_id": {"$ne": target_id}, "role": MemberRole.OWNER.value}
            },
            "members.user_id": target_id,
        },
        {"$pull": {"members": {"user_id": target_id}}},
    )
    if not removed.modified_count:
        current = ensure_found(await Organization.get(organization.id), "Organization")
        if all(member.user_id != target_id for member in current.members):
            raise NotFound("Member")  # removed concurrently
        raise Conflict(LAST_OWNER)
    logger.info(
        "user %s removed from organization %s by user %s", target_id, organization.id, viewer.id
    )
    if bus is not None:
        await announce_revoked(bus, str(target_id))
    return ensure_found(await Organization.get(organization.id), "Organization")
