"""services.tokens: JWT access and device tokens, opaque tokens, the bearer header.

Unit tests call the service directly; the HTTP tests present crafted tokens to Me.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from bson import ObjectId

from core.settings import Settings
from models.accounts import User
from services.errors import Unauthenticated
from services.tokens import (
    bearer_token,
    decode_access_token,
    decode_device_token,
    hash_opaque_token,
    issue_access_token,
    issue_device_token,
    new_opaque_token,
)
from tests.client import Api, Result
from tests.contract import op
from tests.factories import Session, admin_and_user

OTHER_SECRET = "another-secret-that-is-long-enough-for-hs256-0123456789"


# ---------------------------------------------------------------- helpers


def assert_unauthenticated(result: Result) -> str:
    """One UNAUTHENTICATED error, no data, no stack trace; returns its message."""
    assert len(result.errors) == 1, result.body
    extensions = result.errors[0].get("extensions") or {}
    assert extensions.get("code") == "UNAUTHENTICATED", result.body
    assert not {"exception", "stacktrace", "traceback"} & {key.lower() for key in extensions}
    assert "Traceback" not in json.dumps(result.body)
    assert result.body.get("data") is None, result.body
    return str(result.errors[0]["message"])


def claims_for(settings: Settings, subject: str, **overrides: Any) -> dict[str, Any]:
    """Valid access-token claims for `subject`; an override of None drops the claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "sub": subject,
        "iat": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "typ": "access",
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def sign(
    settings: Settings,
    claims: dict[str, Any],
    *,
    secret: str | None = None,
    algorithm: str | None = None,
) -> str:
    with warnings.catch_warnings():
        # The development secret is shorter than HS512 recommends; irrelevant here.
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)
        return jwt.encode(
            claims,
            secret or settings.jwt_secret.get_secret_value(),
            algorithm=algorithm or settings.jwt_algorithm,
        )


def b64url(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unsigned(claims: dict[str, Any], alg: str = "none") -> str:
    """A token with `alg: none` and an empty signature, built by hand."""
    return f"{b64url({'alg': alg, 'typ': 'JWT'})}.{b64url(claims)}."


async def me(api: Api, token: str) -> Result:
    return await api.execute(op("Me"), token=token)


async def user_session(api: Api) -> Session:
    """A USER (an ADMIN exists first) whose id the crafted tokens name."""
    _, user = await admin_and_user(api)
    return user


# ---------------------------------------------------------------- access tokens, unit


async def test_issue_access_token_round_trip(settings: Settings) -> None:
    user_id = str(ObjectId())

    issued = issue_access_token(user_id, settings)
    again = issue_access_token(user_id, settings)

    assert decode_access_token(issued.token, settings) == user_id
    claims = jwt.decode(
        issued.token,
        settings.jwt_secret.get_secret_value(),
        algorithms=[settings.jwt_algorithm],
        audience=settings.jwt_audience,
    )
    assert claims["iss"] == settings.jwt_issuer
    assert claims["typ"] == "access"
    assert claims["exp"] - claims["iat"] == settings.access_token_ttl_seconds
    assert datetime.fromtimestamp(claims["exp"], UTC) == issued.expires_at
    assert issued.expires_at > datetime.now(UTC)
    assert jwt.get_unverified_header(issued.token)["alg"] == settings.jwt_algorithm
    assert claims["jti"] != jwt.decode(again.token, options={"verify_signature": False})["jti"]


async def test_decode_access_token_expired_refused(settings: Settings) -> None:
    past = int(time.time()) - 3600
    token = sign(settings, claims_for(settings, str(ObjectId()), iat=past, exp=past + 60))

    with pytest.raises(Unauthenticated, match="expired"):
        decode_access_token(token, settings)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("garbage", id="garbage"),
        pytest.param("a.b.c", id="three-garbage-parts"),
    ],
)
async def test_decode_access_token_malformed_refused(settings: Settings, token: str) -> None:
    with pytest.raises(Unauthenticated):
        decode_access_token(token, settings)


async def test_decode_access_token_tampered_payload_refused(settings: Settings) -> None:
    issued = issue_access_token(str(ObjectId()), settings)
    header, _, signature = issued.token.split(".")
    forged = f"{header}.{b64url(claims_for(settings, str(ObjectId())))}.{signature}"

    with pytest.raises(Unauthenticated):
        decode_access_token(forged, settings)


async def test_decode_access_token_non_string_subject_refused(settings: Settings) -> None:
    # PyJWT itself refuses a non-string "sub"; either way it is not a user id.
    token = sign(settings, claims_for(settings, "x", sub=12345))

    with pytest.raises(Unauthenticated):
        decode_access_token(token, settings)


# ---------------------------------------------------------------- access tokens, HTTP


async def test_me_crafted_token_control_accepted(api: Api, settings: Settings) -> None:
    # The crafting helpers make tokens the API accepts: the refusals below are real.
    user = await user_session(api)

    result = await me(api, sign(settings, claims_for(settings, user.user_id)))

    assert result.data["me"]["id"] == user.user_id


async def test_me_access_token_expired_unauthenticated(api: Api, settings: Settings) -> None:
    user = await user_session(api)
    past = int(time.time()) - 3600
    token = sign(settings, claims_for(settings, user.user_id, iat=past, exp=past + 60))

    assert "expired" in assert_unauthenticated(await me(api, token)).lower()


async def test_me_access_token_wrong_signature_unauthenticated(
    api: Api, settings: Settings
) -> None:
    user = await user_session(api)
    token = sign(settings, claims_for(settings, user.user_id), secret=OTHER_SECRET)

    assert_unauthenticated(await me(api, token))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
async def test_me_access_token_alg_none_unauthenticated(
    api: Api, settings: Settings, alg: str
) -> None:
    user = await user_session(api)
    token = unsigned(claims_for(settings, user.user_id), alg=alg)

    assert_unauthenticated(await me(api, token))
    with pytest.raises(Unauthenticated):
        decode_access_token(token, settings)


async def test_me_access_token_other_algorithm_unauthenticated(
    api: Api, settings: Settings
) -> None:
    assert settings.jwt_algorithm == "HS256"
    user = await user_session(api)
    claims = claims_for(settings, user.user_id)

    for algorithm in ("HS512", "HS384"):
        token = sign(settings, claims, algorithm=algorithm)
        assert_unauthenticated(await me(api, token))


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"aud": "device"}, id="device-audience"),
        pytest.param({"aud": "somebody-else"}, id="other-audience"),
        pytest.param({"iss": "somebody-else"}, id="other-issuer"),
    ],
)
async def test_me_access_token_wrong_audience_unauthenticated(
    api: Api, settings: Settings, overrides: dict[str, str]
) -> None:
    user = await user_session(api)
    token = sign(settings, claims_for(settings, user.user_id, **overrides))

    assert_unauthenticated(await me(api, token))


async def test_me_device_token_unauthenticated(api: Api, settings: Settings) -> None:
    # A device token naming a user's id must not authenticate that user.
    user = await user_session(api)
    token = issue_device_token(user.user_id, 1, settings).token

    assert_unauthenticated(await me(api, token))


@pytest.mark.parametrize("claim", ["jti", "exp", "iat", "sub", "aud", "iss"])
async def test_me_access_token_missing_claim_unauthenticated(
    api: Api, settings: Settings, claim: str
) -> None:
    user = await user_session(api)
    token = sign(settings, claims_for(settings, user.user_id, **{claim: None}))

    assert_unauthenticated(await me(api, token))
    with pytest.raises(Unauthenticated):
        decode_access_token(token, settings)


async def test_me_access_token_issued_in_future_unauthenticated(
    api: Api, settings: Settings
) -> None:
    user = await user_session(api)
    future = int(time.time()) + 3600
    token = sign(settings, claims_for(settings, user.user_id, iat=future, exp=future + 600))

    assert_unauthenticated(await me(api, token))


@pytest.mark.parametrize("subject", ["not-an-object-id", "", str(ObjectId())])
async def test_me_access_token_unknown_subject_unauthenticated(
    api: Api, settings: Settings, subject: str
) -> None:
    await user_session(api)
    token = sign(settings, claims_for(settings, subject))

    assert_unauthenticated(await me(api, token))


async def test_me_access_token_deleted_user_unauthenticated(api: Api) -> None:
    user = await user_session(api)
    assert (await me(api, user.access_token)).data["me"]["id"] == user.user_id
    stored = await User.get(ObjectId(user.user_id))
    assert stored is not None
    await stored.delete()

    assert_unauthenticated(await me(api, user.access_token))


# ---------------------------------------------------------------- bearer header


@pytest.mark.parametrize(
    ("header", "token"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("Bearer abc.def.ghi", "abc.def.ghi", id="bearer"),
        pytest.param("bearer abc", "abc", id="lower-case-scheme"),
        pytest.param("BEARER abc", "abc", id="upper-case-scheme"),
        pytest.param("  Bearer   abc  ", "abc", id="extra-spaces"),
    ],
)
def test_bearer_token_header_parsed(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Basic xyz", id="basic"),
        pytest.param("Bearer", id="no-token"),
        pytest.param("Bearer    ", id="blank-token"),
        pytest.param("Token abc", id="other-scheme"),
        pytest.param("Bearerabc", id="no-separator"),
        pytest.param("abc.def.ghi", id="bare-token"),
        pytest.param("   ", id="blank"),
    ],
)
def test_bearer_token_header_refused(header: str) -> None:
    with pytest.raises(Unauthenticated):
        bearer_token(header)


# ---------------------------------------------------------------- device tokens


async def test_issue_device_token_round_trip(settings: Settings) -> None:
    device_id = str(ObjectId())

    issued = issue_device_token(device_id, 7, settings)
    claims = decode_device_token(issued.token, settings)

    assert claims.device_id == device_id
    assert claims.version == 7
    assert claims.expires_at == issued.expires_at
    lifetime = issued.expires_at - datetime.now(UTC)
    assert timedelta(seconds=settings.device_token_ttl_seconds - 60) < lifetime
    assert lifetime <= timedelta(seconds=settings.device_token_ttl_seconds)
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert payload["aud"] == settings.device_token_audience


async def test_decode_device_token_wrong_audience_refused(settings: Settings) -> None:
    subject = str(ObjectId())
    access = issue_access_token(subject, settings).token
    device = issue_device_token(subject, 1, settings).token

    with pytest.raises(Unauthenticated):
        decode_device_token(access, settings)
    with pytest.raises(Unauthenticated):
        decode_access_token(device, settings)


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"ver": None}, id="no-version"),
        pytest.param({"ver": "1"}, id="string-version"),
        pytest.param({"exp": int(time.time()) - 10, "iat": int(time.time()) - 100}, id="expired"),
        pytest.param({"iss": "somebody-else"}, id="other-issuer"),
        pytest.param({"jti": None}, id="no-jti"),
    ],
)
async def test_decode_device_token_invalid_refused(
    settings: Settings, overrides: dict[str, Any]
) -> None:
    base = claims_for(
        settings, str(ObjectId()), aud=settings.device_token_audience, typ=None, ver=1
    )
    assert decode_device_token(sign(settings, base), settings).version == 1
    merged = {**base, **overrides}
    token = sign(settings, {key: value for key, value in merged.items() if value is not None})

    with pytest.raises(Unauthenticated):
        decode_device_token(token, settings)


async def test_decode_device_token_wrong_signature_refused(settings: Settings) -> None:
    claims = claims_for(
        settings, str(ObjectId()), aud=settings.device_token_audience, typ=None, ver=1
    )

    with pytest.raises(Unauthenticated):
        decode_device_token(sign(settings, claims, secret=OTHER_SECRET), settings)
    with pytest.raises(Unauthenticated):
        decode_device_token(unsigned(claims), settings)


# ---------------------------------------------------------------- opaque tokens


def test_new_opaque_token_random_and_hashed() -> None:
    tokens = {new_opaque_token() for _ in range(100)}

    assert len(tokens) == 100
    assert all(len(token) >= 43 for token in tokens)
    token = next(iter(tokens))
    assert hash_opaque_token(token) == hash_opaque_token(token)
    assert len(hash_opaque_token(token)) == 64
    assert token not in hash_opaque_token(token)
    assert hash_opaque_token(token) != hash_opaque_token(token + "x")
