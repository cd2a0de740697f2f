"""API keys: made, listed and revoked by their owner; accepted in place of an access
token, limited to their scopes (docs/access.md#api-keys).

A key is `iotk_<lookup id>_<secret>`: the prefix makes a leaked key recognisable (secret
scanners, logs), the lookup id (8 random bytes, not secret) finds its document, and the
secret is 32 random bytes. Only the SHA-256 of the whole key is kept. A slow password
hash (argon2) buys nothing here: it slows down guessing a low-entropy password, and 256
random bits cannot be guessed however fast the hash is; SHA-256 keeps every request's
check at microseconds.

Revocation deletes the document, so the next request with the key fails; open
WebSockets authenticated with it are closed through graph.sessions (`revoked_key_name`).
"""

from __future__ import annotations

import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from beanie import PydanticObjectId

from core.settings import ApiSettings
from live.bus import Bus
from models.accounts import User, utcnow
from models.api_keys import ApiKey, ApiKeyScope
from services import access, audit
from services.accounts import announce_revoked
from services.errors import BadInput, Conflict, Forbidden, Unauthenticated
from services.memberships import load_memberships
from services.tokens import hash_opaque_token
from services.validation import clean_text, ensure_found, parse_id

logger = logging.getLogger(__name__)

PREFIX: Final = "iotk_"
_LOOKUP_BYTES: Final = 8
_SECRET_BYTES: Final = 32
MAX_NAME_LENGTH: Final = 100
MAX_EXPIRES_IN_DAYS: Final = 3650

# The mutations a WRITE key may run: devices, commands, twins, alert rules and alerts,
# dashboards. Everything else (accounts, sessions, API keys, webhooks and notification
# settings, firmware and every ADMIN operation, and any mutation added later until it
# is listed here) needs a password login. The table is in docs/access.md.
WRITE_MUTATIONS: Final = frozenset(
    {
        # devices
        "createDevice",
        "updateDevice",
        "deleteDevice",
        "rotateDeviceCredentials",
        "verifyDeviceToken",
        # commands and twins (issue 14)
        "sendCommand",
        "cancelCommand",
        "updateDesiredState",
        # alert rules and alerts
        "createAlertRule",
        "createNoDataRule",
        "updateAlertRule",
        "enableAlertRule",
        "disableAlertRule",
        "deleteAlertRule",
        "acknowledgeAlert",
        "clearAlert",
        # dashboards
        "createDashboard",
        "updateDashboard",
        "deleteDashboard",
    }
)


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    key: str  # shown this once
    api_key: ApiKey


@dataclass(frozen=True, slots=True)
class ApiKeyGrant:
    """What a request authenticated with an API key may do: act as `user` in `scopes`."""

    user: User
    key_id: str
    scopes: frozenset[ApiKeyScope]
    expires_at: datetime | None

    def has(self, scope: ApiKeyScope) -> bool:
        """Whether the key carries `scope` (WRITE includes READ)."""
        if scope in self.scopes:
            return True
        return scope is ApiKeyScope.READ and ApiKeyScope.WRITE in self.scopes


def is_api_key(token: str) -> bool:
    """Whether a bearer token is an API key (rather than an access token, a JWT)."""
    return token.startswith(PREFIX)


def revoked_key_name(key_id: str) -> str:
    """The name graph.sessions files a key's sockets under (an ObjectId has no colon)."""
    return f"apikey:{key_id}"


def _parse(token: str) -> tuple[str, str] | None:
    lookup_id, separator, secret = token.removeprefix(PREFIX).partition("_")
    if not separator or len(lookup_id) != 2 * _LOOKUP_BYTES or not secret:
        return None
    return lookup_id, secret


async def create_api_key(
    owner: User,
    *,
    name: str,
    scopes: list[ApiKeyScope],
    expires_in_days: int | None,
    settings: ApiSettings,
) -> CreatedApiKey:
    """A new key of `owner`'s; the key itself is returned this once."""
    clean_name = clean_text(name, field="name", max_length=MAX_NAME_LENGTH)
    if not scopes:
        raise BadInput("scopes", "must name at least one scope")
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_EXPIRES_IN_DAYS:
        raise BadInput("expiresInDays", f"must be 1..{MAX_EXPIRES_IN_DAYS} (or omitted)")
    now = utcnow()
    # Counted, not reserved: parallel creations may pass it by a few, never by many.
    live = {"user_id": owner.id, "$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}
    if await ApiKey.find(live).count() >= settings.api_keys_per_user_max:
        raise Conflict(
            f"API key limit reached: at most {settings.api_keys_per_user_max} per user; "
            "revoke one first."
        )
    lookup_id = secrets.token_hex(_LOOKUP_BYTES)
    key = f"{PREFIX}{lookup_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
    document = ApiKey(
        user_id=owner.id,
        name=clean_name,
        # Deduplicated, in the enum's order: the stored list reads the same however asked.
        scopes=[scope for scope in ApiKeyScope if scope in scopes],
        lookup_id=lookup_id,
        secret_hash=hash_opaque_token(key),
        created_at=now,
        expires_at=now + timedelta(days=expires_in_days) if expires_in_days else None,
    )
    await document.insert()
    logger.info("API key %s created by user %s", document.id, owner.id)
    await audit.record(
        owner,
        "apikey.create",
        document.id,
        {
            "name": document.name,
            "scopes": [str(scope) for scope in document.scopes],
            "expiresAt": document.expires_at.isoformat() if document.expires_at else None,
        },
        owner_id=owner.id,
    )
    return CreatedApiKey(key=key, api_key=document)


async def list_api_keys(viewer: User) -> list[ApiKey]:
    """The viewer's own keys, oldest first (at most API_KEYS_PER_USER_MAX and the expired)."""
    visible = access.visible_filter(viewer, "api_key")
    return await ApiKey.find(visible).sort("created_at").to_list()


async def revoke_api_key(viewer: User, key_id: str, *, bus: Bus | None = None) -> None:
    """Delete one of the viewer's keys: it stops working at once; NotFound for another's."""
    object_id = parse_id(key_id, kind="API key")
    query = {"_id": object_id, **access.visible_filter(viewer, "api_key", action="write")}
    document = ensure_found(
        await ApiKey.get_pymongo_collection().find_one_and_delete(query), "API key"
    )
    logger.info("API key %s revoked by user %s", key_id, viewer.id)
    if bus is not None:
        await announce_revoked(bus, revoked_key_name(key_id))
    await audit.record(
        viewer, "apikey.revoke", object_id, {"name": document["name"]}, owner_id=viewer.id
    )


async def revoke_all_api_keys(user_id: PydanticObjectId, *, bus: Bus | None = None) -> int:
    """Delete every key of a user (a password reset); returns how many there were."""
    ids = [str(doc.id) for doc in await ApiKey.find({"user_id": user_id}).to_list()]
    await ApiKey.find({"user_id": user_id}).delete()
    if bus is not None:
        for key_id in ids:
            await announce_revoked(bus, revoked_key_name(key_id))
    return len(ids)


async def authenticate_api_key(
    token: str, required_scope: ApiKeyScope | None, *, settings: ApiSettings
) -> ApiKeyGrant:
    """The grant of a presented API key: Unauthenticated when it is malformed, unknown,
    revoked or expired (one message for all), Forbidden when it lacks `required_scope`
    (None: any scope). The HTTP telemetry and import endpoints call this with INGEST;
    GraphQL (graph.context) with READ."""
    parts = _parse(token)
    document = await ApiKey.find_one({"lookup_id": parts[0]}) if parts else None
    # compare_digest: the comparison takes as long wherever the hashes differ.
    if document is None or not hmac.compare_digest(document.secret_hash, hash_opaque_token(token)):
        raise Unauthenticated("Invalid API key.")
    now = utcnow()
    if document.expires_at is not None and document.expires_at <= now:
        raise Unauthenticated("API key expired.")
    user = await User.get(document.user_id)
    if user is None:
        raise Unauthenticated("Invalid API key.")
    # The principal: a key acts with its user's roles in its organizations.
    user = await load_memberships(user)
    grant = ApiKeyGrant(
        user=user,
        key_id=str(document.id),
        scopes=frozenset(document.scopes),
        expires_at=document.expires_at,
    )
    if required_scope is not None and not grant.has(required_scope):
        raise Forbidden(f"This API key lacks the {required_scope} scope.")
    await _touch(document, now, settings.api_key_last_used_interval_seconds)
    return grant


async def _touch(document: ApiKey, now: datetime, interval_seconds: int) -> None:
    """Set lastUsedAt, at most once per interval: one conditional write, whichever of
    the API processes gets there first, instead of a write per request."""
    stale = now - timedelta(seconds=interval_seconds)
    if document.last_used_at is not None and document.last_used_at > stale:
        return
    await ApiKey.get_pymongo_collection().update_one(
        {
            "_id": document.id,
            "$or": [{"last_used_at": None}, {"last_used_at": {"$lte": stale}}],
        },
        {"$set": {"last_used_at": now}},
    )


def check_operation(grant: ApiKeyGrant, operation_type: str, root_fields: list[str]) -> None:
    """Forbidden unless the key's scopes allow this GraphQL operation: READ (or WRITE)
    for queries and subscriptions; WRITE, and every root field in WRITE_MUTATIONS, for
    a mutation. INGEST alone allows no GraphQL at all."""
    if not grant.has(ApiKeyScope.READ):
        raise Forbidden(
            "This API key has no GraphQL scope (INGEST is for the HTTP telemetry and "
            "import endpoints)."
        )
    if operation_type != "mutation":
        return
    if not grant.has(ApiKeyScope.WRITE):
        raise Forbidden("This API key is read-only (READ): mutations need WRITE.")
    for name in root_fields:
        if name != "__typename" and name not in WRITE_MUTATIONS:
            raise Forbidden(f"{name}: not allowed with an API key; log in with a password.")
