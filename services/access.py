"""The one access decision: may this principal do this to that resource?

Every service and every live-event check asks here; no query builds its own owner
filter. A principal today is a platform user, USER or ADMIN: a USER reads and writes
what it owns, an ADMIN everybody's, firmware is the ADMIN's alone, and dashboards
are personal (an ADMIN too sees only its own). What a principal may not see is
NOT_FOUND (existence is never revealed); what it may see but not do is FORBIDDEN.
A device (its device token) is a principal too, acting only as itself (`device_may_send`).
Organizations (OWNER / OPERATOR / VIEWER) plug in here: see docs/access.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

from models.accounts import Role
from services.errors import Forbidden, NotFound

# read: see, list, subscribe. write: change, delete, acknowledge, create under it.
# admin: change who may do what (a user's role; an organization's members, later).
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
]

# The document field naming a resource's owner (a user is its own owner); None: the
# kind belongs to the platform, not to a user.
OWNER_FIELD: Final[dict[Kind, str | None]] = {
    "device": "owner_id",
    "alert_rule": "owner_id",
    "alert": "owner_id",
    "dashboard": "owner_id",
    "firmware": None,
    "reading_stream": "owner_id",
    "user": "_id",
    "api_key": "user_id",
    # An entry's readers: its actor and the owner of its target (models.audit).
    "audit_entry": "user_ids",
    "command": "owner_id",
}
# Only their owner, whoever else asks (an ADMIN included).
PERSONAL: Final[frozenset[Kind]] = frozenset({"dashboard", "api_key"})
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
}
_ADMIN: Final = Role.ADMIN  # a module global: read per event on the live path
# Matches no document: what a principal sees of a kind it may not see at all.
NOTHING: Final[dict[str, object]] = {"_id": {"$in": []}}


class Principal(Protocol):
    """Who asks. A models.accounts.User is one; so is a Viewer."""

    @property
    def id(self) -> object: ...

    @property
    def role(self) -> Role: ...


@dataclass(frozen=True, slots=True)
class Viewer:
    """A principal whose id is a str, as live events carry their owner ids."""

    id: str
    role: Role


def viewer_of(principal: Principal) -> Viewer:
    """`principal` with a str id, for checks against live events."""
    return Viewer(str(principal.id), principal.role)


def may(principal: Principal, action: Action, kind: Kind, owner_id: object = None) -> bool:
    """Whether `principal` may `action` a `kind` owned by `owner_id` (None: not owned
    by one user; for an owned kind that means "anybody's").

    Live feeds call this per subscriber per event: keep it a few comparisons.
    """
    if owner_id is not None and owner_id == principal.id:
        return action != "admin" or principal.role is _ADMIN
    return principal.role is _ADMIN and kind not in PERSONAL


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
    field = OWNER_FIELD[kind]
    if field is None or not may(principal, action, kind, principal.id):
        return dict(NOTHING)
    return {field: principal.id}


def sees_all(principal: Principal, kind: Kind) -> bool:
    """Whether `principal` may see every `kind` (an ADMIN's feeds listen on the
    all-devices channel)."""
    return not visible_filter(principal, kind)


def device_may_send(device_id: str, target_device_id: str) -> bool:
    """Whether a device (the principal of a device token) may send as `target_device_id`:
    only as itself, as the broker's ACLs say for MQTT. Any other target, existing or not,
    is NOT_FOUND to it."""
    return device_id == target_device_id
