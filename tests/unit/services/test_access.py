"""services.access, the one access decision: the role x action x resource matrix, pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import get_args

import pytest
from bson import ObjectId

from models.accounts import MemberRole, Role
from services import access
from services.access import Action, Kind
from services.errors import Forbidden, NotFound


@dataclass(frozen=True)
class User:
    """A principal with an ObjectId id, as a models.accounts.User has, and its
    memberships as services.memberships loads them ({organization id (str): role})."""

    id: object
    role: Role
    memberships: Mapping[str, MemberRole] = field(default_factory=dict)


ORG = ObjectId()  # the organization that owns the resources
OWNER = ObjectId()  # the user who is its OWNER (and the "user" kind's owner)
ALICE = User(OWNER, Role.USER, {str(ORG): MemberRole.OWNER})
OPERATOR = User(ObjectId(), Role.USER, {str(ORG): MemberRole.OPERATOR})
VIEWER = User(ObjectId(), Role.USER, {str(ORG): MemberRole.VIEWER})
BOB = User(ObjectId(), Role.USER, {str(ObjectId()): MemberRole.OWNER})
ADMIN = User(ObjectId(), Role.ADMIN)

ACTIONS: tuple[Action, ...] = get_args(Action.__value__)
KINDS: tuple[Kind, ...] = get_args(Kind.__value__)
OWNED: tuple[Kind, ...] = ("device", "alert_rule", "alert", "reading_stream")
ORGANIZATION: tuple[Kind, ...] = (*OWNED, "command", "organization")
# A user's own, whoever else asks (API keys: not even an ADMIN), or readable by the
# users it names (audit entries: the actor, the owner of the target) and ADMINs.
USERS_OWN: tuple[Kind, ...] = ("user", "api_key", "audit_entry")
EVERYTHING: set[Action] = {"read", "write", "admin"}

# (who, kind) -> the actions allowed on a resource of `kind` owned by ORG (a user: by
# ALICE; firmware: by nobody). Everything not listed is denied.
MATRIX: dict[tuple[str, Kind], set[Action]] = {
    **{("owner", kind): set(EVERYTHING) for kind in (*ORGANIZATION, "dashboard")},
    **{("operator", kind): {"read", "write"} for kind in (*ORGANIZATION, "dashboard")},
    **{("viewer", kind): {"read"} for kind in (*ORGANIZATION, "dashboard")},
    **{("owner", kind): {"read", "write"} for kind in USERS_OWN},
    **{
        ("admin", kind): set(EVERYTHING)
        for kind in (*ORGANIZATION, "firmware", "user", "audit_entry")
    },
}
PRINCIPALS = {"owner": ALICE, "operator": OPERATOR, "viewer": VIEWER, "other": BOB, "admin": ADMIN}


def owner_of(kind: Kind) -> object:
    if kind == "firmware":
        return None
    return OWNER if kind in USERS_OWN else ORG


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_may_follows_matrix(who: str, action: Action, kind: Kind) -> None:
    expected = action in MATRIX.get((who, kind), set())
    assert access.may(PRINCIPALS[who], action, kind, owner_of(kind)) is expected


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("kind", KINDS)
def test_require_raises_contract_error(who: str, action: Action, kind: Kind) -> None:
    principal, owner = PRINCIPALS[who], owner_of(kind)
    if action in MATRIX.get((who, kind), set()):
        access.require(principal, action, kind, owner)
    elif owner is not None and "read" not in MATRIX.get((who, kind), set()):
        # Never reveal that somebody else's resource exists.
        with pytest.raises(NotFound):
            access.require(principal, action, kind, owner)
    else:
        with pytest.raises(Forbidden):
            access.require(principal, action, kind, owner)


def test_require_firmware_user_forbidden_not_not_found() -> None:
    with pytest.raises(Forbidden, match="ADMIN"):
        access.require(ALICE, "read", "firmware")


@pytest.mark.parametrize("kind", [*OWNED, "dashboard"])
def test_visible_filter_member_organizations_only(kind: Kind) -> None:
    assert access.visible_filter(ALICE, kind) == {"organization_id": ORG}
    assert access.visible_filter(ALICE, kind, action="write") == {"organization_id": ORG}
    assert access.visible_filter(VIEWER, kind) == {"organization_id": ORG}
    # A VIEWER writes nothing: its write filter matches no document.
    assert access.visible_filter(VIEWER, kind, action="write") == access.NOTHING
    assert not access.sees_all(ALICE, kind)


def test_visible_filter_several_organizations() -> None:
    other = ObjectId()
    member = User(
        ObjectId(), Role.USER, {str(ORG): MemberRole.VIEWER, str(other): MemberRole.OPERATOR}
    )
    assert access.visible_filter(member, "device") == {"organization_id": {"$in": [ORG, other]}}
    assert access.visible_filter(member, "device", action="write") == {"organization_id": other}


def test_visible_filter_member_of_none_sees_nothing() -> None:
    assert access.visible_filter(User(ObjectId(), Role.USER), "device") == access.NOTHING


@pytest.mark.parametrize("kind", [*OWNED, "firmware", "user"])
def test_visible_filter_admin_everything(kind: Kind) -> None:
    assert access.visible_filter(ADMIN, kind) == {}
    assert access.sees_all(ADMIN, kind)


def test_visible_filter_dashboard_members_only_for_admin() -> None:
    assert access.visible_filter(ADMIN, "dashboard") == access.NOTHING
    own = User(ADMIN.id, Role.ADMIN, {str(ADMIN.id): MemberRole.OWNER})
    assert access.visible_filter(own, "dashboard") == {"organization_id": ADMIN.id}
    assert not access.sees_all(ADMIN, "dashboard")


def test_visible_filter_user_itself_only() -> None:
    assert access.visible_filter(ALICE, "user") == {"_id": OWNER}
    assert access.visible_filter(ALICE, "user", action="admin") == access.NOTHING


def test_visible_filter_firmware_nothing_for_user() -> None:
    assert access.visible_filter(ALICE, "firmware") == access.NOTHING


def test_may_live_event_str_ids() -> None:
    # Live events carry organization ids as str: a Viewer made for them compares as such.
    viewer = access.viewer_of(ALICE)
    assert viewer.memberships == {str(ORG): MemberRole.OWNER}
    assert access.may(viewer, "read", "reading_stream", str(ORG))
    assert access.may(viewer, "read", "reading_stream", ORG)
    assert not access.may(viewer, "read", "reading_stream", str(OWNER))
    assert not access.may(viewer, "read", "reading_stream", str(BOB.id))
    assert access.may(access.viewer_of(ADMIN), "read", "alert", str(ORG))
    assert not access.may(access.viewer_of(VIEWER), "write", "device", str(ORG))


def test_member_role() -> None:
    assert access.member_role(OPERATOR, ORG) is MemberRole.OPERATOR
    assert access.member_role(OPERATOR, str(ORG)) is MemberRole.OPERATOR
    assert access.member_role(BOB, ORG) is None


def test_may_unsaved_principal_owns_nothing() -> None:
    nobody = User(None, Role.USER)
    assert not access.may(nobody, "read", "device", None)


def test_device_may_send_only_as_itself() -> None:
    own, other = str(ObjectId()), str(ObjectId())
    assert access.device_may_send(own, own)
    assert not access.device_may_send(own, other)
    assert not access.device_may_send(own, own.upper())  # ids are compared exactly
