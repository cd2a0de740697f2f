"""Access tokens (JWT), device tokens (JWT) and opaque refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from core.settings import ApiSettings
from services.errors import Unauthenticated

_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "jti"]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class DeviceClaims:
    device_id: str
    version: int
    expires_at: datetime


def _encode(
    settings: ApiSettings, *, subject: str, audience: str, ttl: int, extra: dict[str, object]
) -> IssuedToken:
    now = datetime.now(UTC).replace(microsecond=0)
    expires_at = now + timedelta(seconds=ttl)
    claims = {
        "iss": settings.jwt_issuer,
        "aud": audience,
        "sub": subject,
        "iat": now,
        "exp": expires_at,
        "jti": uuid.uuid4().hex,
        **extra,
    }
    token = jwt.encode(
        claims, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm
    )
    return IssuedToken(token=token, expires_at=expires_at)


def _decode(token: str, settings: ApiSettings, *, audience: str) -> dict[str, object]:
    try:
        # One algorithm only: "none" and every other algorithm are refused.
        claims: dict[str, object] = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            audience=audience,
            issuer=settings.jwt_issuer,
            options={"require": _REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError as err:
        raise Unauthenticated("Token expired.") from err
    except jwt.InvalidTokenError as err:
        raise Unauthenticated("Invalid token.") from err
    if not isinstance(claims.get("sub"), str):
        raise Unauthenticated("Invalid token.")
    return claims


def issue_access_token(
    user_id: str, settings: ApiSettings, *, session_version: int = 0
) -> IssuedToken:
    """A short-lived access token for one user, valid while its session version is."""
    return _encode(
        settings,
        subject=user_id,
        audience=settings.jwt_audience,
        ttl=settings.access_token_ttl_seconds,
        extra={"typ": "access", "sv": session_version},
    )


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: str
    expires_at: float  # epoch seconds
    session_version: int


def decode_access_claims(token: str, settings: ApiSettings) -> AccessClaims:
    """Who an access token names and until when; Unauthenticated when it is not valid now."""
    claims = _decode(token, settings, audience=settings.jwt_audience)
    expires = claims["exp"]
    # Tokens issued before session versions existed carry none: version 0.
    version = claims.get("sv", 0)
    if not isinstance(expires, int | float) or type(version) is not int:
        raise Unauthenticated("Invalid token.")
    return AccessClaims(
        user_id=str(claims["sub"]), expires_at=float(expires), session_version=version
    )


def decode_access_token(token: str, settings: ApiSettings) -> str:
    """The user id an access token names; Unauthenticated when it is not valid now."""
    return decode_access_claims(token, settings).user_id


def issue_device_token(device_id: str, version: int, settings: ApiSettings) -> IssuedToken:
    """A device token; rotation bumps `version` and so revokes every older one."""
    return _encode(
        settings,
        subject=device_id,
        audience=settings.device_token_audience,
        ttl=settings.device_token_ttl_seconds,
        extra={"ver": version},
    )


def decode_device_token(token: str, settings: ApiSettings) -> DeviceClaims:
    """The device and credentials version a device token names (signature and time only)."""
    claims = _decode(token, settings, audience=settings.device_token_audience)
    version, expires = claims.get("ver"), claims["exp"]
    if not isinstance(version, int) or not isinstance(expires, int):
        raise Unauthenticated("Invalid token.")
    return DeviceClaims(
        device_id=str(claims["sub"]),
        version=version,
        expires_at=datetime.fromtimestamp(expires, UTC),
    )


def new_opaque_token() -> str:
    """A random secret for refresh tokens and MQTT passwords (256 bits)."""
    return secrets.token_urlsafe(32)


def hash_opaque_token(token: str) -> str:
    """SHA-256 of a high-entropy secret: enough, as nothing about it can be guessed."""
    return hashlib.sha256(token.encode()).hexdigest()


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` value, or None without one."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("Authorization must be 'Bearer <token>'.")
    return token.strip()
