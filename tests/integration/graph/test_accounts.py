"""The contract's accounts operations over HTTP: happy paths and every error code."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from bson import ObjectId
from redis.asyncio import Redis

from core.settings import Settings
from models.accounts import RefreshToken, Role, User, utcnow
from services import passwords
from services.passwords import hash_password, verify_password
from services.tokens import hash_opaque_token
from tests.client import Api, Result
from tests.contract import op
from tests.factories import PASSWORD, Session, admin_and_user, register, unique_email

# The contract's error codes (contract/operations.graphql, "Errors").
CONTRACT_CODES = frozenset(
    {
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "NOT_FOUND",
        "BAD_USER_INPUT",
        "CONFLICT",
        "RATE_LIMITED",
        "QUERY_TOO_COMPLEX",
        "INTERNAL",
    }
)
NEW_PASSWORD = "a brand new passphrase"
# A well-formed address of exactly 254 characters (the longest allowed).
EMAIL_254 = "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 57 + ".com"


# ---------------------------------------------------------------- helpers


def assert_error(result: Result, code: str) -> str:
    """One error with `code`, no data, no stack trace; returns its message."""
    assert len(result.errors) == 1, result.body
    error = result.errors[0]
    extensions = error.get("extensions") or {}
    assert extensions.get("code") in CONTRACT_CODES, result.body
    assert extensions["code"] == code, result.body
    assert not {"exception", "stacktrace", "traceback"} & {key.lower() for key in extensions}
    body = json.dumps(result.body)
    assert "Traceback" not in body
    assert 'File "' not in body
    assert result.body.get("data") is None, result.body
    return str(error["message"])


async def login(api: Api, email: str, password: str = PASSWORD) -> Result:
    return await api.execute(op("Login"), {"email": email, "password": password})


async def refresh(api: Api, refresh_token: str) -> Result:
    return await api.execute(op("Refresh"), {"refreshToken": refresh_token})


async def me(api: Api, token: str) -> Result:
    return await api.execute(op("Me"), token=token)


async def update_user(api: Api, session: Session, user_id: str, **changes: Any) -> Result:
    """UpdateUser as `session`; its own e-mail/password changes carry the right currentPassword."""
    if user_id == session.user_id and {"email", "password"} & changes.keys():
        changes.setdefault("currentPassword", PASSWORD)
    return await api.execute(
        op("UpdateUser"), {"id": user_id, **changes}, token=session.access_token
    )


async def users_page(
    api: Api, session: Session, first: int | None = None, after: str | None = None
) -> Result:
    variables: dict[str, Any] = {}
    if first is not None:
        variables["first"] = first
    if after is not None:
        variables["after"] = after
    return await api.execute(op("Users"), variables, token=session.access_token)


async def insert_users(settings: Settings, count: int) -> list[str]:
    """`count` USERs written directly (the API's registrations are rate limited)."""
    password_hash = await hash_password(PASSWORD, settings)
    created = [User(email=unique_email("bulk"), password_hash=password_hash) for _ in range(count)]
    for user in created:
        await user.insert()
    return [str(user.id) for user in created]


async def stored_user(user_id: str) -> User:
    user = await User.get(ObjectId(user_id))
    assert user is not None
    return user


def parse_instant(value: str) -> datetime:
    instant = datetime.fromisoformat(value)
    assert instant.tzinfo is not None, f"{value!r} has no UTC offset"
    return instant


# ---------------------------------------------------------------- Register


async def test_register_user_first_admin_then_users(api: Api) -> None:
    first = await register(api)
    second = await register(api)
    third = await register(api)

    assert [first.role, second.role, third.role] == ["ADMIN", "USER", "USER"]
    assert (await stored_user(first.user_id)).role == Role.ADMIN
    assert (await stored_user(second.user_id)).role == Role.USER
    assert (await stored_user(third.user_id)).role == Role.USER


async def test_register_user_returns_bearer_pair(api: Api, settings: Settings) -> None:
    email = unique_email()
    before = datetime.now(UTC) - timedelta(seconds=5)
    result = await api.execute(op("Register"), {"email": email, "password": PASSWORD})

    payload = result.data["register"]
    assert payload["tokenType"] == "Bearer"
    assert payload["expiresIn"] == settings.access_token_ttl_seconds
    assert payload["user"]["email"] == email
    assert payload["user"]["id"]
    created_at = parse_instant(payload["user"]["createdAt"])
    assert before <= created_at <= datetime.now(UTC) + timedelta(seconds=5)

    claims = jwt.decode(
        payload["accessToken"],
        settings.jwt_secret.get_secret_value(),
        algorithms=[settings.jwt_algorithm],
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == payload["user"]["id"]
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_seconds

    # The refresh token is stored as its hash only, never in clear.
    refresh_token = payload["refreshToken"]
    stored = await RefreshToken.find_one(
        RefreshToken.token_hash == hash_opaque_token(refresh_token)
    )
    assert stored is not None
    assert str(stored.user_id) == payload["user"]["id"]
    raw = await RefreshToken.get_pymongo_collection().find_one({"_id": stored.id})
    assert refresh_token not in json.dumps(raw, default=str)

    mine = await me(api, payload["accessToken"])
    assert mine.data["me"]["id"] == payload["user"]["id"]


async def test_register_email_normalised_to_lower_case(api: Api) -> None:
    session = await register(api, "Mixed.Case@Example.COM")

    assert session.email == "mixed.case@example.com"
    assert await User.find_one(User.email == "mixed.case@example.com") is not None
    assert await User.find_one(User.email == "Mixed.Case@Example.COM") is None
    assert (await login(api, "mixed.case@example.com")).data["login"]["user"]["id"] == (
        session.user_id
    )


async def test_register_email_taken_other_case_conflict(api: Api) -> None:
    await register(api, "taken@example.com")

    result = await api.execute(op("Register"), {"email": "TAKEN@Example.com", "password": PASSWORD})

    message = assert_error(result, "CONFLICT")
    assert "email" in message
    assert await User.find(User.email == "taken@example.com").count() == 1
    assert await User.count() == 1


@pytest.mark.parametrize(
    ("email", "password", "field"),
    [
        pytest.param("not-an-email", PASSWORD, "email", id="invalid-email"),
        pytest.param("two@@example.com", PASSWORD, "email", id="double-at"),
        pytest.param("", PASSWORD, "email", id="empty-email"),
        pytest.param("   ", PASSWORD, "email", id="blank-email"),
        pytest.param(EMAIL_254.replace("@", "@e"), PASSWORD, "email", id="email-255"),
        pytest.param("x" * 300 + "@example.com", PASSWORD, "email", id="email-huge"),
        pytest.param("valid@example.com", "x" * 7, "password", id="password-7"),
        pytest.param("valid@example.com", "x" * 129, "password", id="password-129"),
        pytest.param("valid@example.com", "", "password", id="password-empty"),
    ],
)
async def test_register_input_invalid_bad_user_input(
    api: Api, email: str, password: str, field: str
) -> None:
    await register(api)  # an existing ADMIN, so the count starts above zero
    users_before = await User.count()
    tokens_before = await RefreshToken.count()

    result = await api.execute(op("Register"), {"email": email, "password": password})

    message = assert_error(result, "BAD_USER_INPUT")
    assert message.startswith(f"{field}:"), message
    assert await User.count() == users_before
    assert await RefreshToken.count() == tokens_before


async def test_register_email_254_characters_accepted(api: Api) -> None:
    assert len(EMAIL_254) == 254
    await register(api)

    session = await register(api, EMAIL_254)

    assert session.email == EMAIL_254
    assert await User.find_one(User.email == EMAIL_254) is not None


async def test_register_user_concurrent_only_one_admin(api: Api) -> None:
    sessions = await asyncio.gather(*(register(api) for _ in range(6)))

    assert sorted(session.role for session in sessions) == ["ADMIN"] + ["USER"] * 5
    assert await User.find(User.role == Role.ADMIN).count() == 1


async def test_register_password_length_bounds_accepted(api: Api) -> None:
    short = await register(api, password="x" * 8)
    long = await register(api, password="y" * 128)

    assert (await login(api, short.email, "x" * 8)).data["login"]["user"]["id"] == short.user_id
    assert (await login(api, long.email, "y" * 128)).data["login"]["user"]["id"] == long.user_id


async def test_register_user_rate_limited_per_address(api: Api, settings: Settings) -> None:
    for _ in range(settings.registrations_per_address):
        await register(api)

    result = await api.execute(op("Register"), {"email": unique_email(), "password": PASSWORD})

    assert_error(result, "RATE_LIMITED")
    assert await User.count() == settings.registrations_per_address


async def test_register_user_rate_limited_per_email(
    api: Api, settings: Settings, redis: Redis
) -> None:
    taken = await register(api)
    for _ in range(settings.login_failures_per_email - 1):
        assert_error(
            await api.execute(op("Register"), {"email": taken.email, "password": PASSWORD}),
            "CONFLICT",
        )
    await redis.delete(*[key async for key in redis.scan_iter("ratelimit:register:*")])

    # From any address now, this e-mail has used up its attempts.
    result = await api.execute(op("Register"), {"email": taken.email, "password": PASSWORD})

    assert_error(result, "RATE_LIMITED")
    assert await User.count() == 1


# ---------------------------------------------------------------- Login


async def test_login_user_right_password(api: Api, settings: Settings) -> None:
    session = await register(api)

    result = await login(api, session.email.upper())

    payload = result.data["login"]
    assert payload["user"] == {"id": session.user_id, "email": session.email, "role": "ADMIN"}
    assert payload["tokenType"] == "Bearer"
    assert payload["expiresIn"] == settings.access_token_ttl_seconds
    assert payload["refreshToken"] != session.refresh_token
    assert (await me(api, payload["accessToken"])).data["me"]["id"] == session.user_id
    assert (await refresh(api, payload["refreshToken"])).data["refreshToken"]["accessToken"]


@pytest.mark.parametrize(
    "email",
    [
        pytest.param("Mixed.Case@Example.COM", id="mixed-case"),
        pytest.param(" padded@example.com ", id="padded"),
        pytest.param("jose\u0301@example.com", id="decomposed-unicode"),
    ],
)
async def test_login_user_email_as_registered(api: Api, email: str) -> None:
    session = await register(api, email)

    result = await login(api, email)

    assert result.data["login"]["user"]["id"] == session.user_id


async def test_login_credentials_wrong_same_message(api: Api) -> None:
    session = await register(api)
    tokens_before = await RefreshToken.count()

    wrong_password = await login(api, session.email, "not the password")
    unknown_email = await login(api, unique_email("nobody"), PASSWORD)

    assert assert_error(wrong_password, "UNAUTHENTICATED") == assert_error(
        unknown_email, "UNAUTHENTICATED"
    )
    assert await RefreshToken.count() == tokens_before


async def test_login_email_rate_limited_after_failures(api: Api, settings: Settings) -> None:
    session = await register(api)
    for _ in range(settings.login_failures_per_email):
        assert_error(await login(api, session.email, "not the password"), "UNAUTHENTICATED")
    tokens_before = await RefreshToken.count()

    right_password = await login(api, session.email)
    other_case = await login(api, session.email.upper())

    assert_error(right_password, "RATE_LIMITED")
    assert_error(other_case, "RATE_LIMITED")
    assert await RefreshToken.count() == tokens_before
    # The limit is per e-mail: somebody else still logs in.
    other = await register(api)
    assert (await login(api, other.email)).data["login"]["user"]["id"] == other.user_id


async def test_login_email_success_resets_failures(api: Api, settings: Settings) -> None:
    session = await register(api)
    below_limit = settings.login_failures_per_email - 1
    for _ in range(below_limit):
        assert_error(await login(api, session.email, "not the password"), "UNAUTHENTICATED")

    assert (await login(api, session.email)).data["login"]["user"]["id"] == session.user_id

    # Counting starts again from zero: the full allowance of failures is UNAUTHENTICATED.
    for _ in range(settings.login_failures_per_email):
        assert_error(await login(api, session.email, "not the password"), "UNAUTHENTICATED")
    assert_error(await login(api, session.email), "RATE_LIMITED")


async def test_login_address_rate_limited_after_failures(api: Api, settings: Settings) -> None:
    session = await register(api)
    per_email = settings.login_failures_per_email - 1
    failures = 0
    while failures < settings.login_failures_per_address:
        email = unique_email("stranger")
        for _ in range(min(per_email, settings.login_failures_per_address - failures)):
            assert_error(await login(api, email, "whatever pass"), "UNAUTHENTICATED")
            failures += 1

    assert_error(await login(api, session.email), "RATE_LIMITED")


async def test_login_unknown_email_verifies_a_hash(
    api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = await register(api)
    real_hash = (await stored_user(session.user_id)).password_hash
    assert await verify_password("x", None, settings) is False
    assert await verify_password(PASSWORD, real_hash, settings) is True
    assert await verify_password("not the password", real_hash, settings) is False

    verified: list[tuple[str, str]] = []
    original = passwords.argon2.verify

    def spy(secret: str, hashed: str) -> bool:
        verified.append((secret, hashed))
        return bool(original(secret, hashed))

    monkeypatch.setattr(passwords.argon2, "verify", spy)

    assert await verify_password("x", None, settings) is False
    unknown = await login(api, unique_email("nobody"), "some password")
    wrong = await login(api, session.email, "other password")

    assert_error(unknown, "UNAUTHENTICATED")
    assert_error(wrong, "UNAUTHENTICATED")
    assert [secret for secret, _ in verified] == ["x", "some password", "other password"]
    dummy = verified[1][1]
    assert dummy.startswith("$argon2id$")
    assert dummy != real_hash

    # The dummy hash costs what a real one costs: same algorithm parameters.
    def parameters(hashed: str) -> str:
        return hashed.split("$")[3]

    assert parameters(dummy) == parameters(real_hash) == parameters(verified[2][1])


# ---------------------------------------------------------------- Refresh


async def test_refresh_token_returns_working_pair(api: Api, settings: Settings) -> None:
    session = await register(api)

    result = await refresh(api, session.refresh_token)

    payload = result.data["refreshToken"]
    assert payload["expiresIn"] == settings.access_token_ttl_seconds
    assert payload["refreshToken"] != session.refresh_token
    assert payload["accessToken"] != session.access_token
    assert (await me(api, payload["accessToken"])).data["me"]["id"] == session.user_id
    old = await RefreshToken.find_one(
        RefreshToken.token_hash == hash_opaque_token(session.refresh_token)
    )
    new = await RefreshToken.find_one(
        RefreshToken.token_hash == hash_opaque_token(payload["refreshToken"])
    )
    assert old is not None and new is not None
    assert old.used_at is not None
    assert new.family_id == old.family_id
    # The new refresh token rotates again.
    assert (await refresh(api, payload["refreshToken"])).data["refreshToken"]["refreshToken"]


async def test_refresh_token_used_twice_revokes_family(api: Api) -> None:
    session = await register(api)
    other_login = (await login(api, session.email)).data["login"]["refreshToken"]
    rotated = (await refresh(api, session.refresh_token)).data["refreshToken"]["refreshToken"]

    reused = await refresh(api, session.refresh_token)

    assert_error(reused, "UNAUTHENTICATED")
    assert_error(await refresh(api, rotated), "UNAUTHENTICATED")
    family = await RefreshToken.find_one(RefreshToken.token_hash == hash_opaque_token(rotated))
    assert family is not None and family.revoked_at is not None
    # Another login of the same user is another family, left alone.
    assert (await refresh(api, other_login)).data["refreshToken"]["refreshToken"]


@pytest.mark.parametrize("token", ["not-a-refresh-token", "", "x" * 43])
async def test_refresh_token_unknown_unauthenticated(api: Api, token: str) -> None:
    await register(api)
    tokens_before = await RefreshToken.count()

    assert_error(await refresh(api, token), "UNAUTHENTICATED")
    assert await RefreshToken.count() == tokens_before


async def test_refresh_token_expired_unauthenticated(api: Api) -> None:
    session = await register(api)
    stored = await RefreshToken.find_one(
        RefreshToken.token_hash == hash_opaque_token(session.refresh_token)
    )
    assert stored is not None
    await stored.set({RefreshToken.expires_at: utcnow() - timedelta(seconds=1)})

    assert_error(await refresh(api, session.refresh_token), "UNAUTHENTICATED")
    assert await RefreshToken.count() == 1


async def test_refresh_token_deleted_user_unauthenticated(api: Api) -> None:
    _, user = await admin_and_user(api)
    await (await stored_user(user.user_id)).delete()

    assert_error(await refresh(api, user.refresh_token), "UNAUTHENTICATED")


# ---------------------------------------------------------------- Logout


async def test_logout_user_revokes_refresh_tokens(api: Api) -> None:
    admin, user = await admin_and_user(api)
    second_login = (await login(api, user.email)).data["login"]["refreshToken"]

    result = await api.execute(op("Logout"), token=user.access_token)

    assert result.data == {"logout": True}
    assert_error(await refresh(api, user.refresh_token), "UNAUTHENTICATED")
    assert_error(await refresh(api, second_login), "UNAUTHENTICATED")
    # Nobody else's session ends.
    assert (await refresh(api, admin.refresh_token)).data["refreshToken"]["refreshToken"]
    # A new login works as ever.
    assert (await login(api, user.email)).data["login"]["user"]["id"] == user.user_id


async def test_logout_user_without_token_unauthenticated(api: Api) -> None:
    session = await register(api)

    assert_error(await api.execute(op("Logout")), "UNAUTHENTICATED")
    assert (await refresh(api, session.refresh_token)).data["refreshToken"]["refreshToken"]


# ---------------------------------------------------------------- Me


async def test_me_user_returns_caller(api: Api) -> None:
    _, user = await admin_and_user(api)

    result = await me(api, user.access_token)

    node = result.data["me"]
    assert {key: node[key] for key in ("id", "email", "role")} == {
        "id": user.user_id,
        "email": user.email,
        "role": "USER",
    }
    assert parse_instant(node["createdAt"]) <= datetime.now(UTC) + timedelta(seconds=5)


async def test_me_user_without_token_unauthenticated(api: Api) -> None:
    await register(api)

    assert_error(await api.execute(op("Me")), "UNAUTHENTICATED")


@pytest.mark.parametrize(
    "authorization",
    ["Basic xyz", "Bearer", "Bearer x y", "Token abc", "Bearer not.a.jwt", "Bearer garbage"],
)
async def test_me_user_bad_authorization_unauthenticated(api: Api, authorization: str) -> None:
    session = await register(api)
    assert (await me(api, session.access_token)).data["me"]["id"] == session.user_id

    result = await api.execute(op("Me"), headers={"Authorization": authorization})

    assert_error(result, "UNAUTHENTICATED")


# ---------------------------------------------------------------- Users


async def test_users_admin_sees_all(api: Api) -> None:
    admin, user = await admin_and_user(api)
    third = await register(api)

    result = await users_page(api, admin)

    connection = result.data["users"]
    nodes = [edge["node"] for edge in connection["edges"]]
    assert [node["id"] for node in nodes] == [admin.user_id, user.user_id, third.user_id]
    assert [node["email"] for node in nodes] == [admin.email, user.email, third.email]
    assert [node["role"] for node in nodes] == ["ADMIN", "USER", "USER"]
    assert all(parse_instant(node["createdAt"]) for node in nodes)
    assert connection["totalCount"] == 3
    assert connection["pageInfo"] == {
        "hasNextPage": False,
        "endCursor": connection["edges"][-1]["cursor"],
    }


async def test_users_pagination_walks_every_user_once(api: Api, settings: Settings) -> None:
    admin, user = await admin_and_user(api)
    expected = [admin.user_id, user.user_id, *await insert_users(settings, 5)]

    seen: list[str] = []
    pages: list[tuple[int, bool]] = []
    after: str | None = None
    while True:
        connection = (await users_page(api, admin, first=3, after=after)).data["users"]
        edges = connection["edges"]
        assert connection["totalCount"] == len(expected)
        assert connection["pageInfo"]["endCursor"] == edges[-1]["cursor"]
        seen.extend(edge["node"]["id"] for edge in edges)
        pages.append((len(edges), connection["pageInfo"]["hasNextPage"]))
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
        assert len(pages) < 10, "pagination does not end"

    assert seen == expected
    assert pages == [(3, True), (3, True), (1, False)]


async def test_users_pagination_exact_last_page_has_no_next(api: Api, settings: Settings) -> None:
    admin, _ = await admin_and_user(api)
    await insert_users(settings, 2)

    first = (await users_page(api, admin, first=2)).data["users"]
    second = (await users_page(api, admin, first=2, after=first["pageInfo"]["endCursor"])).data[
        "users"
    ]

    assert first["pageInfo"]["hasNextPage"] is True
    assert len(second["edges"]) == 2
    assert second["pageInfo"]["hasNextPage"] is False


async def test_users_page_size_capped(api: Api, settings: Settings) -> None:
    admin, _ = await admin_and_user(api)
    await insert_users(settings, settings.page_size_max)
    total = settings.page_size_max + 2

    huge = (await users_page(api, admin, first=10**6)).data["users"]
    default = (await users_page(api, admin)).data["users"]

    assert len(huge["edges"]) == min(total, settings.page_size_max)
    assert huge["pageInfo"]["hasNextPage"] is True
    assert huge["totalCount"] == total
    assert len(default["edges"]) == min(total, settings.page_size_default)


async def test_users_user_role_forbidden(api: Api) -> None:
    _, user = await admin_and_user(api)

    assert_error(await users_page(api, user), "FORBIDDEN")


async def test_users_without_token_unauthenticated(api: Api) -> None:
    await register(api)

    assert_error(await api.execute(op("Users")), "UNAUTHENTICATED")


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("not-a-cursor", id="plain-text"),
        pytest.param("!!!", id="not-base64"),
        pytest.param("é", id="non-ascii"),
        pytest.param(_b64("id:zzz"), id="bad-object-id"),
        pytest.param(_b64(f"xx:{ObjectId()}"), id="wrong-prefix"),
        pytest.param("", id="empty"),
    ],
)
async def test_users_cursor_malformed_bad_user_input(api: Api, cursor: str) -> None:
    admin, _ = await admin_and_user(api)

    message = assert_error(await users_page(api, admin, first=2, after=cursor), "BAD_USER_INPUT")

    assert message.startswith("after:"), message


async def test_users_first_negative_bad_user_input(api: Api) -> None:
    admin, _ = await admin_and_user(api)

    message = assert_error(await users_page(api, admin, first=-1), "BAD_USER_INPUT")

    assert message.startswith("first:"), message


# ---------------------------------------------------------------- User


async def test_user_self_returns_user(api: Api) -> None:
    _, user = await admin_and_user(api)

    result = await api.execute(op("User"), {"id": user.user_id}, token=user.access_token)

    assert result.data["user"] == {"id": user.user_id, "email": user.email, "role": "USER"}


async def test_user_admin_reads_anyone(api: Api) -> None:
    admin, user = await admin_and_user(api)

    result = await api.execute(op("User"), {"id": user.user_id}, token=admin.access_token)

    assert result.data["user"] == {"id": user.user_id, "email": user.email, "role": "USER"}


async def test_user_other_as_user_not_found_like_missing(api: Api) -> None:
    admin, user = await admin_and_user(api)
    missing = str(ObjectId())

    other = await api.execute(op("User"), {"id": admin.user_id}, token=user.access_token)
    absent = await api.execute(op("User"), {"id": missing}, token=user.access_token)
    absent_for_admin = await api.execute(op("User"), {"id": missing}, token=admin.access_token)

    message = assert_error(other, "NOT_FOUND")
    assert assert_error(absent, "NOT_FOUND") == message
    assert assert_error(absent_for_admin, "NOT_FOUND") == message
    assert admin.email not in json.dumps(other.body)


@pytest.mark.parametrize("user_id", ["abc", "z" * 24, "", "0" * 23, "0" * 25])
async def test_user_id_malformed_bad_user_input(api: Api, user_id: str) -> None:
    admin, _ = await admin_and_user(api)

    result = await api.execute(op("User"), {"id": user_id}, token=admin.access_token)

    message = assert_error(result, "BAD_USER_INPUT")
    assert message.startswith("id:"), message


async def test_user_without_token_unauthenticated(api: Api) -> None:
    session = await register(api)

    assert_error(await api.execute(op("User"), {"id": session.user_id}), "UNAUTHENTICATED")


# ---------------------------------------------------------------- UpdateUser


async def test_update_user_own_email_normalised(api: Api) -> None:
    _, user = await admin_and_user(api)

    result = await update_user(api, user, user.user_id, email="New.Address@Example.COM")

    assert result.data["updateUser"] == {
        "id": user.user_id,
        "email": "new.address@example.com",
        "role": "USER",
    }
    assert (await stored_user(user.user_id)).email == "new.address@example.com"
    assert (await login(api, "new.address@example.com")).data["login"]["user"]["id"] == (
        user.user_id
    )
    assert_error(await login(api, user.email), "UNAUTHENTICATED")


async def test_update_user_own_password_revokes_sessions(api: Api) -> None:
    admin, user = await admin_and_user(api)
    second_login = (await login(api, user.email)).data["login"]["refreshToken"]

    result = await update_user(api, user, user.user_id, password=NEW_PASSWORD)

    assert result.data["updateUser"]["id"] == user.user_id
    assert (await login(api, user.email, NEW_PASSWORD)).data["login"]["user"]["id"] == (
        user.user_id
    )
    assert_error(await login(api, user.email, PASSWORD), "UNAUTHENTICATED")
    assert_error(await refresh(api, user.refresh_token), "UNAUTHENTICATED")
    assert_error(await refresh(api, second_login), "UNAUTHENTICATED")
    assert (await refresh(api, admin.refresh_token)).data["refreshToken"]["refreshToken"]


async def test_update_user_own_role_as_user_forbidden(api: Api) -> None:
    _, user = await admin_and_user(api)

    result = await update_user(api, user, user.user_id, role="ADMIN", email=unique_email("sneaky"))

    assert_error(result, "FORBIDDEN")
    stored = await stored_user(user.user_id)
    assert stored.role == Role.USER
    assert stored.email == user.email
    assert_error(await users_page(api, user), "FORBIDDEN")


async def test_update_user_role_admin_promotes_user(api: Api) -> None:
    admin, user = await admin_and_user(api)

    result = await update_user(api, admin, user.user_id, role="ADMIN")

    assert result.data["updateUser"] == {"id": user.user_id, "email": user.email, "role": "ADMIN"}
    assert (await stored_user(user.user_id)).role == Role.ADMIN
    # The promotion takes effect on the user's existing access token.
    assert (await users_page(api, user)).data["users"]["totalCount"] == 2


async def test_update_user_last_admin_demotion_bad_user_input(api: Api) -> None:
    admin, user = await admin_and_user(api)

    result = await update_user(api, admin, admin.user_id, role="USER")

    message = assert_error(result, "BAD_USER_INPUT")
    assert message.startswith("role:"), message
    assert (await stored_user(admin.user_id)).role == Role.ADMIN

    # With a second ADMIN, the first may step down.
    await update_user(api, admin, user.user_id, role="ADMIN")
    demoted = await update_user(api, admin, admin.user_id, role="USER")
    assert demoted.data["updateUser"]["role"] == "USER"
    assert (await stored_user(admin.user_id)).role == Role.USER


async def test_update_user_admin_changes_other_user(api: Api) -> None:
    admin, user = await admin_and_user(api)

    result = await update_user(
        api, admin, user.user_id, email="Renamed@Example.com", password=NEW_PASSWORD
    )

    assert result.data["updateUser"]["email"] == "renamed@example.com"
    assert (await login(api, "renamed@example.com", NEW_PASSWORD)).data["login"]["user"][
        "id"
    ] == user.user_id


async def test_update_user_other_as_user_not_found(api: Api) -> None:
    admin, user = await admin_and_user(api)

    other = await update_user(api, user, admin.user_id, email=unique_email("stolen"))
    missing = await update_user(api, user, str(ObjectId()), email=unique_email("ghost"))

    assert assert_error(other, "NOT_FOUND") == assert_error(missing, "NOT_FOUND")
    assert (await stored_user(admin.user_id)).email == admin.email


async def test_update_user_email_taken_conflict(api: Api) -> None:
    admin, user = await admin_and_user(api)

    result = await update_user(api, user, user.user_id, email=admin.email.upper())

    message = assert_error(result, "CONFLICT")
    assert "email" in message
    assert (await stored_user(user.user_id)).email == user.email
    assert await User.find(User.email == admin.email).count() == 1


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"password": "short"}, "password", id="password-short"),
        pytest.param({"password": "p" * 129}, "password", id="password-long"),
        pytest.param({"email": "fresh@example.com", "password": "short"}, "password", id="both"),
        pytest.param({"email": "not-an-email"}, "email", id="email-invalid"),
        pytest.param({"email": ""}, "email", id="email-empty"),
    ],
)
async def test_update_user_input_invalid_nothing_changed(
    api: Api, changes: dict[str, str], field: str
) -> None:
    _, user = await admin_and_user(api)
    before = await stored_user(user.user_id)

    result = await update_user(api, user, user.user_id, **changes)

    message = assert_error(result, "BAD_USER_INPUT")
    assert message.startswith(f"{field}:"), message
    after = await stored_user(user.user_id)
    assert (after.email, after.password_hash, after.role) == (
        before.email,
        before.password_hash,
        before.role,
    )
    assert (await login(api, user.email)).data["login"]["user"]["id"] == user.user_id
    assert (await refresh(api, user.refresh_token)).data["refreshToken"]["refreshToken"]


async def test_update_user_id_malformed_bad_user_input(api: Api) -> None:
    _, user = await admin_and_user(api)

    message = assert_error(
        await update_user(api, user, "not-an-id", email=unique_email()), "BAD_USER_INPUT"
    )

    assert message.startswith("id:"), message


async def test_update_user_without_token_unauthenticated(api: Api) -> None:
    session = await register(api)

    result = await api.execute(
        op("UpdateUser"), {"id": session.user_id, "email": unique_email("anon")}
    )

    assert_error(result, "UNAUTHENTICATED")
    assert (await stored_user(session.user_id)).email == session.email
