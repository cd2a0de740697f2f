"""The one access decision: may this principal do this to that resource?

Every service and every live-event check asks here; no query builds its own owner
filter. Devices, alert rules, alerts, dashboards and reading streams belong to an
organization; a principal (a platform user, USER or ADMIN) carries its memberships,
{organization id: OWNER | OPERATOR | VIEWER}: a member reads its organizations'
resources, an OPERATOR or OWNER writes them, an OWNER administers the organization
(members). An ADMIN reads and writes everybody's, except dashboards (only members see
those); firmware is the ADMIN's alone. A user is its own owner. What a principal may
not see is NOT_FOUND (existence is never revealed); what it may see but not do is
FORBIDDEN. A device (its device token) is a principal too, acting only as itself
(`device_may_send`). See docs/access.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from beanie import PydanticObjectId

from models.accounts import MemberRole, Role
from services.errors import Forbidden, NotFound

# read: see, list, subscribe. write: change, delete, acknowledge, create under it.
# admin: change who may do what (a user's role; an organization's members).
type Action = Literal["read", "write", "admin"]
type Kind = Literal[
    "device",
    "alert_rule",
    "alert",
    "dashboard",
    "firmware",
    "reading_stream",
    "user",
    "api_key",
    "audit_entry",
    "command",
    "organization",
]

# The document field naming a resource's owner: the owning organization's id for the
# organization's kinds (an organization is its own), a user is its own owner; None: the
# kind belongs to the platform. Live events carry the same id as their owner_id.
OWNER_FIELD: Final[dict[Kind, str | None]] = {
    "device": "organization_id",
    "alert_rule": "organization_id",
    "alert": "organization_id",
    "dashboard": "organization_id",
    "firmware": None,
    "reading_stream": "organization_id",
    "user": "_id",
    "api_key": "user_id",
    # An entry's readers: its actor and the owner of its target (models.audit).
    "audit_entry": "user_ids",
    # A command's owner_id is its device's organization (services.commands).
    "command": "owner_id",
    "organization": "_id",
}
# Owned by an organization: decided by the principal's role in it.
ORGANIZATION_KINDS: Final[frozenset[Kind]] = frozenset(
    {"device", "alert_rule", "alert", "dashboard", "reading_stream", "command", "organization"}
)
# Only their organization's members (dashboards) or their user (API keys), whoever else
# asks (an ADMIN included).
PERSONAL: Final[frozenset[Kind]] = frozenset({"dashboard", "api_key"})
# What each role in an organization may do to its resources.
ROLE_ACTIONS: Final[dict[MemberRole, frozenset[Action]]] = {
    MemberRole.OWNER: frozenset({"read", "write", "admin"}),
    MemberRole.OPERATOR: frozenset({"read", "write"}),
    MemberRole.VIEWER: frozenset({"read"}),
}
# How NOT_FOUND names a kind.
LABEL: Final[dict[Kind, str]] = {
    "device": "Device",
    "alert_rule": "Alert rule",
    "alert": "Alert",
    "dashboard": "Dashboard",
    "firmware": "Firmware",
    "reading_stream": "Device",
    "user": "User",
    "api_key": "API key",
    "audit_entry": "Audit entry",
    "command": "Command",
    "organization": "Organization",
}
_ADMIN: Final = Role.ADMIN  # a module global: read per event on the live path
# Matches no document: what a principal sees of a kind it may not see at all.
NOTHING: Final[dict[str, object]] = {"_id": {"$in": []}}


_OWNER: Final = MemberRole.OWNER  # module globals: read per event on the live path
_OPERATOR: Final = MemberRole.OPERATOR
_ORGANIZATION_KINDS: Final = ORGANIZATION_KINDS


class Principal(Protocol):
    """Who asks. A models.accounts.User is one (its memberships loaded with it by
    services.organizations.load_memberships); so is a Viewer."""

    @property
    def id(self) -> object: ...

    @property
    def role(self) -> Role: ...

    @property
    def memberships(self) -> Mapping[str, MemberRole]:
        """{organization id (str): its role there}."""
        ...


@dataclass(frozen=True, slots=True)
class Viewer:
    """A principal whose id is a str, as live events carry their owner ids. Its
    memberships are those of when it was made: a change of membership closes the
    user's WebSockets (graph.sessions), so a live feed never outlives its rights."""

    id: str
    role: Role
    memberships: Mapping[str, MemberRole] = field(default_factory=dict)


def viewer_of(principal: Principal) -> Viewer:
    """`principal` with a str id, for checks against live events."""
    return Viewer(str(principal.id), principal.role, dict(principal.memberships))


def member_role(principal: Principal, organization_id: object) -> MemberRole | None:
    """`principal`'s role in the organization `organization_id` (None: not a member)."""
    key = organization_id if type(organization_id) is str else str(organization_id)
    return principal.memberships.get(key)


def may(principal: Principal, action: Action, kind: Kind, owner_id: object = None) -> bool:
    """Whether `principal` may `action` a `kind` owned by `owner_id`: the owning
    organization's id for an organization's kind, a user's for "user" (None: not owned
    by one; for an owned kind that means "anybody's").

    Live feeds call this per subscriber per event: keep it a few comparisons.
    """
    if owner_id is not None:
        if kind in _ORGANIZATION_KINDS:
            key = owner_id if type(owner_id) is str else str(owner_id)
            role = principal.memberships.get(key)
            # Identity tests, not ROLE_ACTIONS[role]: an enum member hashes in Python.
            if role is not None and (
                action == "read" or role is _OWNER or (role is _OPERATOR and action == "write")
            ):
                return True
        elif owner_id == principal.id:
            return action != "admin" or principal.role is _ADMIN
    return principal.role is _ADMIN and kind not in PERSONAL


def organizations_where(principal: Principal, action: Action) -> list[str]:
    """The ids of the organizations where `principal`'s role allows `action`."""
    return [
        organization_id
        for organization_id, role in principal.memberships.items()
        if action in ROLE_ACTIONS[role]
    ]


def require(principal: Principal, action: Action, kind: Kind, owner_id: object = None) -> None:
    """Nothing when `may` allows it; otherwise NotFound for a resource the principal may
    not see, Forbidden for one it may see but not `action`, or for an operation on
    anybody's (`owner_id` None: every user, firmware) it may not do."""
    if may(principal, action, kind, owner_id):
        return
    if owner_id is None:
        # Anybody's, or the platform's (firmware): today only an ADMIN may.
        raise Forbidden("This operation requires the ADMIN role.")
    if not may(principal, "read", kind, owner_id):
        raise NotFound(LABEL[kind])
    raise Forbidden()


def visible_filter(
    principal: Principal, kind: Kind, *, action: Action = "read"
) -> dict[str, object]:
    """The MongoDB filter of the `kind` documents `principal` may `action`: the one
    place an owner filter is built."""
    if kind not in PERSONAL and may(principal, action, kind):
        return {}
    owner_field = OWNER_FIELD[kind]
    if owner_field is None:
        return dict(NOTHING)
    if kind in ORGANIZATION_KINDS:
        ids = [PydanticObjectId(i) for i in organizations_where(principal, action)]
        if not ids:
            return dict(NOTHING)
        if len(ids) == 1:
            return {owner_field: ids[0]}
        return {owner_field: {"$in": ids}}
    if not may(principal, action, kind, principal.id):
        return dict(NOTHING)
    return {owner_field: principal.id}


def sees_all(principal: Principal, kind: Kind) -> bool:
    """Whether `principal` may see every `kind` (an ADMIN's feeds listen on the
    all-devices channel)."""
    return not visible_filter(principal, kind)


def device_may_send(device_id: str, target_device_id: str) -> bool:
    """Whether a device (the principal of a device token) may send as `target_device_id`:
    only as itself, as the broker's ACLs say for MQTT. Any other target, existing or not,
    is NOT_FOUND to it."""
    return device_id == target_device_id
