"""services.access, the one access decision: the role x action x resource matrix, pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

import pytest
from bson import ObjectId

from models.accounts import Role
from services import access
from services.access import Action, Kind
from services.errors import Forbidden, NotFound


@dataclass(frozen=True)
class User:
    """A principal with an ObjectId id, as a models.accounts.User has."""

    id: object
    role: Role


OWNER = ObjectId()
ALICE = User(OWNER, Role.USER)
BOB = User(ObjectId(), Role.USER)
ADMIN = User(ObjectId(), Role.ADMIN)

ACTIONS: tuple[Action, ...] = get_args(Action.__value__)
KINDS: tuple[Kind, ...] = get_args(Kind.__value__)
OWNED: tuple[Kind, ...] = (
    "device",
    "alert_rule",
    "alert",
    "reading_stream",
    "audit_entry",
    "command",
)

# (who, kind) -> the actions allowed on a resource of `kind` owned by ALICE (firmware:
# owned by nobody). Everything not listed is denied.
MATRIX: dict[tuple[str, Kind], set[Action]] = {
    **{("owner", kind): {"read", "write"} for kind in (*OWNED, "dashboard", "api_key", "user")},
    **{("admin", kind): {"read", "write", "admin"} for kind in (*OWNED, "firmware", "user")},
}
PRINCIPALS = {"owner": ALICE, "other": BOB, "admin": ADMIN}


def owner_of(kind: Kind) -> object:
    return None if kind == "firmware" else OWNER


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


@pytest.mark.parametrize("kind", [*OWNED, "dashboard", "api_key"])
def test_visible_filter_user_owner_only(kind: Kind) -> None:
    field = access.OWNER_FIELD[kind]
    assert field is not None
    assert access.visible_filter(ALICE, kind) == {field: OWNER}
    assert access.visible_filter(ALICE, kind, action="write") == {field: OWNER}
    assert not access.sees_all(ALICE, kind)


@pytest.mark.parametrize("kind", [*OWNED, "firmware", "user"])
def test_visible_filter_admin_everything(kind: Kind) -> None:
    assert access.visible_filter(ADMIN, kind) == {}
    assert access.sees_all(ADMIN, kind)


def test_visible_filter_dashboard_personal_for_admin() -> None:
    assert access.visible_filter(ADMIN, "dashboard") == {"owner_id": ADMIN.id}
    assert not access.sees_all(ADMIN, "dashboard")


def test_visible_filter_api_key_personal_for_admin() -> None:
    assert access.visible_filter(ADMIN, "api_key") == {"user_id": ADMIN.id}
    assert not access.sees_all(ADMIN, "api_key")


def test_visible_filter_user_itself_only() -> None:
    assert access.visible_filter(ALICE, "user") == {"_id": OWNER}
    assert access.visible_filter(ALICE, "user", action="admin") == access.NOTHING


def test_visible_filter_firmware_nothing_for_user() -> None:
    assert access.visible_filter(ALICE, "firmware") == access.NOTHING


def test_may_live_event_str_ids() -> None:
    # Live events carry owner ids as str: a Viewer made for them compares as such.
    viewer = access.viewer_of(ALICE)
    assert access.may(viewer, "read", "reading_stream", str(OWNER))
    assert not access.may(viewer, "read", "reading_stream", str(BOB.id))
    assert access.may(access.viewer_of(ADMIN), "read", "alert", str(OWNER))


def test_may_unsaved_principal_owns_nothing() -> None:
    nobody = User(None, Role.USER)
    assert not access.may(nobody, "read", "device", None)


def test_device_may_send_only_as_itself() -> None:
    own, other = str(ObjectId()), str(ObjectId())
    assert access.device_may_send(own, own)
    assert not access.device_may_send(own, other)
    assert not access.device_may_send(own, own.upper())  # ids are compared exactly
