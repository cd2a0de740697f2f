"""A stolen access token is not the account: own e-mail/password changes need the password."""

from __future__ import annotations

import pytest

from models.accounts import User
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD, admin_and_user, register, unique_email


@pytest.mark.parametrize(
    "current",
    [pytest.param(None, id="missing"), pytest.param("not the password", id="wrong")],
)
@pytest.mark.parametrize("field", ["email", "password"])
async def test_update_user_stolen_token_without_current_password_unauthenticated(
    api: Api, current: str | None, field: str
) -> None:
    victim = await register(api)
    before = await User.get(victim.user_id)
    change = {"email": unique_email("attacker")} if field == "email" else {"password": "x" * 20}
    variables = {"id": victim.user_id, **change}
    if current is not None:
        variables["currentPassword"] = current

    result = await api.execute(op("UpdateUser"), variables, token=victim.access_token)

    assert [e["extensions"]["code"] for e in result.errors] == ["UNAUTHENTICATED"]
    after = await User.get(victim.user_id)
    assert before is not None and after is not None
    assert (after.email, after.password_hash) == (before.email, before.password_hash)


async def test_update_user_own_email_with_current_password_changes(api: Api) -> None:
    user = await register(api)
    new_email = unique_email("moved")

    result = await api.execute(
        op("UpdateUser"),
        {"id": user.user_id, "email": new_email, "currentPassword": PASSWORD},
        token=user.access_token,
    )

    assert result.data["updateUser"]["email"] == new_email


async def test_update_user_admin_other_user_needs_no_current_password(api: Api) -> None:
    admin, user = await admin_and_user(api)
    new_email = unique_email("renamed")

    result = await api.execute(
        op("UpdateUser"), {"id": user.user_id, "email": new_email}, token=admin.access_token
    )

    assert result.data["updateUser"]["email"] == new_email


async def test_update_user_own_password_old_access_token_unauthenticated(api: Api) -> None:
    # The attacker holds a copy of the access token; the owner changes the password.
    user = await register(api)
    stolen = user.access_token

    changed = await api.execute(
        op("UpdateUser"),
        {"id": user.user_id, "password": "a brand new passphrase", "currentPassword": PASSWORD},
        token=user.access_token,
    )

    assert changed.data["updateUser"]["id"] == user.user_id
    refused = await api.execute(op("Me"), token=stolen)
    assert [e["extensions"]["code"] for e in refused.errors] == ["UNAUTHENTICATED"]
    fresh = await api.execute(
        op("Login"), {"email": user.email, "password": "a brand new passphrase"}
    )
    token = fresh.data["login"]["accessToken"]
    assert (await api.execute(op("Me"), token=token)).data["me"]["id"] == user.user_id


async def test_logout_ends_access_tokens_of_every_session(api: Api) -> None:
    user = await register(api)
    other = await api.execute(op("Login"), {"email": user.email, "password": PASSWORD})
    other_token = other.data["login"]["accessToken"]

    assert (await api.execute(op("Logout"), token=user.access_token)).data == {"logout": True}

    for token in (user.access_token, other_token):
        result = await api.execute(op("Me"), token=token)
        assert [e["extensions"]["code"] for e in result.errors] == ["UNAUTHENTICATED"]
