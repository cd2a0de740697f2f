"""services.api_keys without servers: the key format and the scope decision per operation."""

from __future__ import annotations

import pytest
from bson import ObjectId

from models.accounts import User
from models.api_keys import ApiKeyScope
from services.api_keys import (
    PREFIX,
    WRITE_MUTATIONS,
    ApiKeyGrant,
    _parse,
    check_operation,
    is_api_key,
    revoked_key_name,
)
from services.errors import Forbidden

READ, WRITE, INGEST = ApiKeyScope.READ, ApiKeyScope.WRITE, ApiKeyScope.INGEST


def grant(*scopes: ApiKeyScope) -> ApiKeyGrant:
    user = User.model_construct(id=ObjectId(), email="a@example.com", password_hash="")
    return ApiKeyGrant(user=user, key_id=str(ObjectId()), scopes=frozenset(scopes), expires_at=None)


def test_parse_api_key_lookup_and_secret() -> None:
    assert _parse(f"{PREFIX}0123456789abcdef_se_cr-et") == ("0123456789abcdef", "se_cr-et")
    assert _parse(f"{PREFIX}0123456789abcdef") is None
    assert _parse(f"{PREFIX}short_secret") is None
    assert _parse(f"{PREFIX}0123456789abcdef_") is None


def test_is_api_key_jwt_is_not() -> None:
    assert is_api_key("iotk_x")
    assert not is_api_key("eyJhbGciOiJIUzI1NiJ9.e30.sig")


def test_revoked_key_name_cannot_be_a_user_id() -> None:
    assert ":" in revoked_key_name(str(ObjectId()))


@pytest.mark.parametrize(
    ("scopes", "needed", "has"),
    [
        ({READ}, READ, True),
        ({WRITE}, READ, True),
        ({WRITE}, WRITE, True),
        ({READ}, WRITE, False),
        ({INGEST}, READ, False),
        ({WRITE}, INGEST, False),
        ({INGEST}, INGEST, True),
    ],
)
def test_grant_has_write_includes_read_only(
    scopes: set[ApiKeyScope], needed: ApiKeyScope, has: bool
) -> None:
    assert grant(*scopes).has(needed) is has


@pytest.mark.parametrize("kind", ["query", "subscription"])
def test_check_operation_reads_need_read_or_write(kind: str) -> None:
    check_operation(grant(READ), kind, ["devices"])
    check_operation(grant(WRITE), kind, ["devices"])
    with pytest.raises(Forbidden):
        check_operation(grant(INGEST), kind, ["devices"])


@pytest.mark.parametrize("field", sorted(WRITE_MUTATIONS))
def test_check_operation_write_mutations_need_write(field: str) -> None:
    check_operation(grant(WRITE), "mutation", [field, "__typename"])
    for scopes in ({READ}, {INGEST}):
        with pytest.raises(Forbidden):
            check_operation(grant(*scopes), "mutation", [field])


@pytest.mark.parametrize(
    "field",
    [
        "register",
        "login",
        "refreshToken",
        "logout",
        "updateUser",
        "createApiKey",
        "revokeApiKey",
        "setNotificationWebhook",
        "uploadFirmware",
        "deleteFirmware",
        "startFirmwareUpdate",
        "cancelFirmwareUpdate",
        "somethingAddedLater",
    ],
)
def test_check_operation_account_admin_mutations_refused_any_scope(field: str) -> None:
    with pytest.raises(Forbidden, match=field):
        check_operation(grant(READ, WRITE, INGEST), "mutation", ["createDevice", field])
