"""Registration, login, token rotation and user management."""

from __future__ import annotations

import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.events import USERS_REVOKED_CHANNEL
from core.settings import ApiSettings
from live.bus import Bus
from models.accounts import RefreshToken, Role, User, utcnow
from models.platform import Marker
from services import access, audit, email_verification, ratelimit
from services.errors import BadInput, Conflict, Forbidden, Unauthenticated
from services.memberships import ensure_personal_organization, load_memberships
from services.pagination import Page, paginate
from services.passwords import hash_password, verify_password
from services.tokens import (
    IssuedToken,
    hash_opaque_token,
    issue_access_token,
    new_opaque_token,
)
from services.validation import check_password, ensure_found, normalise_email, parse_id

logger = logging.getLogger(__name__)

FIRST_ADMIN_MARKER = "first-admin"
# Longest e-mail text a failed login's audit entry keeps (an address is at most 254).
_AUDIT_EMAIL_MAX = 254


@dataclass(frozen=True, slots=True)
class AuthSession:
    user: User
    access: IssuedToken
    refresh_token: str


async def _start_session(
    user: User, settings: ApiSettings, *, family_id: str | None = None
) -> AuthSession:
    refresh = new_opaque_token()
    await RefreshToken(
        token_hash=hash_opaque_token(refresh),
        user_id=user.id,
        family_id=family_id or uuid.uuid4().hex,
        expires_at=utcnow() + timedelta(seconds=settings.refresh_token_ttl_seconds),
    ).insert()
    access = issue_access_token(str(user.id), settings, session_version=user.session_version)
    return AuthSession(user=user, access=access, refresh_token=refresh)


async def register(
    email: str, password: str, *, client_address: str, settings: ApiSettings, redis: Redis
) -> AuthSession:
    """Create a USER and log it in; in development and test the very first one
    becomes ADMIN (elsewhere the first ADMIN is made by `python -m api.admin`)."""
    if not settings.registration_open:
        raise Forbidden("Registration is closed; ask an administrator for an account.")
    address = normalise_email(email)
    check_password(password)
    window = settings.rate_limit_window_seconds
    await ratelimit.take(
        redis,
        "register",
        client_address,
        limit=settings.registrations_per_address,
        window_seconds=window,
    )
    # Per e-mail too: probing which addresses are taken costs attempts like logins do.
    await ratelimit.take(
        redis,
        "register-email",
        address,
        limit=settings.login_failures_per_email,
        window_seconds=window,
    )
    user = User(email=address, password_hash=await hash_password(password, settings))
    try:
        await user.insert()
    except DuplicateKeyError as err:
        raise Conflict("email: already registered") from err
    await email_verification.send_verification(user, settings)
    await ensure_personal_organization(user)
    if settings.environment == "production":
        # Whoever registers first on a fresh deployment must not get to administer it.
        return await _start_session(user, settings)
    # The marker's unique _id makes "first" atomic across concurrent registrations.
    try:
        await Marker(id=FIRST_ADMIN_MARKER, claimed_by=str(user.id)).insert()
    except DuplicateKeyError:
        pass
    else:
        user.role = Role.ADMIN
        await user.save()
        logger.info("user %s registered as the first ADMIN", user.id)
    return await _start_session(user, settings)


async def login(
    email: str, password: str, *, client_address: str, settings: ApiSettings, redis: Redis
) -> AuthSession:
    """Check the password; failures count against the client address, and lock out the
    (e-mail, address) pair for growing times: guesses from one address never lock the
    account's owner out from another."""
    try:
        address = normalise_email(email)
    except BadInput:
        # Cannot be registered, so it cannot log in; still counted, still a plain refusal.
        address = email.strip().lower()
    window = settings.rate_limit_window_seconds
    # Counted as failures before the password is checked, so that parallel guesses
    # cannot all pass the limit first; a success gives its count back.
    await ratelimit.take(
        redis,
        "login-address",
        client_address,
        limit=settings.login_failures_per_address,
        window_seconds=window,
    )
    pair = f"{address}\n{client_address}"
    await ratelimit.take_or_lock_out(
        redis,
        "login-pair",
        pair,
        allowance=settings.login_failures_per_email,
        window_seconds=window,
        lockout_seconds=settings.login_lockout_seconds,
        max_lockout_seconds=settings.login_lockout_max_seconds,
    )
    user = await User.find_one(User.email == address)
    # Verified even for an unknown e-mail, so the answer takes as long either way.
    valid = await verify_password(password, user.password_hash if user else None, settings)
    if user is None or not valid:
        # Never the password; the e-mail as typed (bounded), and where from.
        await audit.record(
            None,
            "login.failed",
            user.id if user else None,
            {"email": email[:_AUDIT_EMAIL_MAX], "clientAddress": client_address},
            owner_id=user.id if user else None,
        )
        raise Unauthenticated("Invalid e-mail or password.")
    await ratelimit.clear_lockout(redis, "login-pair", pair)
    await ratelimit.give_back(redis, "login-address", client_address)
    return await _start_session(user, settings)


async def refresh(refresh_token: str, *, settings: ApiSettings) -> AuthSession:
    """Swap a refresh token for a new pair; a reused one revokes its whole family."""
    token_hash = hash_opaque_token(refresh_token)
    now = utcnow()
    collection = RefreshToken.get_pymongo_collection()
    claimed = await collection.find_one_and_update(
        {"token_hash": token_hash, "used_at": None, "revoked_at": None, "expires_at": {"$gt": now}},
        {"$set": {"used_at": now}},
    )
    if claimed is None:
        known = await RefreshToken.find_one(RefreshToken.token_hash == token_hash)
        if known is not None and known.used_at is not None:
            await RefreshToken.find(
                RefreshToken.family_id == known.family_id,
                RefreshToken.revoked_at == None,  # noqa: E711
            ).update_many({"$set": {"revoked_at": now}})
            logger.warning(
                "refresh token reuse for user %s: family %s revoked", known.user_id, known.family_id
            )
            raise Unauthenticated("Refresh token reuse detected; this login was revoked.")
        raise Unauthenticated("Invalid or expired refresh token.")
    user = await User.get(claimed["user_id"])
    if user is None:
        raise Unauthenticated("Invalid or expired refresh token.")
    session = await _start_session(user, settings, family_id=claimed["family_id"])
    # A concurrent reuse may have revoked the family between our claim and our insert:
    # the new token joined the family first, so any revocation from now on covers it,
    # and a revocation that came earlier is seen here.
    revoked = await RefreshToken.find(
        RefreshToken.family_id == claimed["family_id"],
        RefreshToken.revoked_at != None,  # noqa: E711
    ).count()
    if revoked:
        await RefreshToken.find(
            RefreshToken.token_hash == hash_opaque_token(session.refresh_token)
        ).update_many({"$set": {"revoked_at": now}})
        raise Unauthenticated("Refresh token reuse detected; this login was revoked.")
    return session


async def logout(user: User) -> None:
    """End every session of `user`: its refresh tokens and its access tokens."""
    # Access tokens first: from here on none issued before is accepted, so a stolen one
    # stops working even while the refresh tokens are being revoked.
    await User.get_pymongo_collection().update_one(
        {"_id": user.id}, {"$inc": {"session_version": 1}}
    )
    await RefreshToken.find(
        RefreshToken.user_id == user.id,
        RefreshToken.revoked_at == None,  # noqa: E711
    ).update_many({"$set": {"revoked_at": utcnow()}})


async def user_from_access_token_subject(subject: str, *, session_version: int = 0) -> User:
    """The user an access token names; Unauthenticated when it no longer exists or the
    token's session has ended (logout, new password)."""
    if not PydanticObjectId.is_valid(subject):
        raise Unauthenticated("Invalid token.")
    user = await User.get(PydanticObjectId(subject))
    if user is None:
        raise Unauthenticated("Invalid token.")
    if user.session_version != session_version:
        raise Unauthenticated("Session ended: log in again.")
    # The principal: what the access decision reads of its organizations.
    return await load_memberships(user)


async def list_users(viewer: User, *, first: int, after: str | None) -> Page[User]:
    """Every user, oldest first; Forbidden unless the viewer may see them all (ADMIN)."""
    access.require(viewer, "read", "user")
    visible = access.visible_filter(viewer, "user")
    return await paginate(User, visible, first=first, after=after, newest_first=False)


async def get_user(viewer: User, user_id: str) -> User:
    """The viewer itself, or anyone for an ADMIN; NotFound otherwise."""
    object_id = parse_id(user_id, kind="user")
    access.require(viewer, "read", "user", object_id)
    return ensure_found(await User.get(object_id), "User")


async def update_user(
    viewer: User,
    user_id: str,
    *,
    email: str | None,
    password: str | None,
    role: Role | None,
    current_password: str | None = None,
    settings: ApiSettings,
    # None only where the service is driven alone (tests): nothing is announced.
    bus: Bus | None = None,
) -> User:
    """Change e-mail/password (self or ADMIN) and role (ADMIN only); a new role or
    password ends the user's open WebSockets (announced on `bus`)."""
    target = await get_user(viewer, user_id)
    if target.id == viewer.id and (email is not None or password is not None):
        # A stolen access token alone must not be enough to take the account over.
        valid = current_password is not None and await verify_password(
            current_password, viewer.password_hash, settings
        )
        if not valid:
            raise Unauthenticated("currentPassword: wrong or missing.")
    if role is not None and role != target.role:
        if not access.may(viewer, "admin", "user", target.id):
            raise Forbidden("Only an ADMIN may change a role.")
        if target.role == Role.ADMIN and await User.find(User.role == Role.ADMIN).count() <= 1:
            raise BadInput("role", "the last ADMIN cannot be demoted")
    changes: dict[str, object] = {}
    if email is not None:
        changes["email"] = normalise_email(email)
        if changes["email"] != target.email:
            changes["email_verified"] = False  # the new address is verified by its own link
    if password is not None:
        changes["password_hash"] = await hash_password(check_password(password), settings)
    if role is not None:
        changes["role"] = role
    if not changes:
        return target
    before_role = target.role
    demoted = target.role == Role.ADMIN and role is not None and role != Role.ADMIN
    before = {field: getattr(target, field) for field in changes}
    try:
        await target.set(changes)
    except DuplicateKeyError as err:
        raise Conflict("email: already registered") from err
    if demoted and not await User.find(User.role == Role.ADMIN).count():
        # Two ADMINs demoting each other at once both passed the check above: undo
        # this update rather than leave nobody to administer (the other undoes its
        # own the same way, so both stay ADMIN and both are told).
        await target.set(before)
        raise BadInput("role", "the last ADMIN cannot be demoted")
    await _audit_user_changes(viewer, target, before)
    if changes.get("email_verified") is False:
        await email_verification.send_verification(target, settings)
    if password is not None:
        # A new password ends every session that the old one opened.
        await logout(target)
    if bus is not None and (password is not None or (role is not None and role != before_role)):
        # A socket keeps the role it was opened with: every API process closes it.
        await announce_revoked(bus, str(target.id))
    return target


async def _audit_user_changes(viewer: User, target: User, before: dict[str, object]) -> None:
    """One audit entry per changed field: user.email, user.password, user.role."""
    for field, action in (("email", "user.email"), ("password_hash", "user.password")):
        if field in before:
            details = {"from": before[field], "to": target.email} if field == "email" else {}
            await audit.record(viewer, action, target.id, details, owner_id=target.id)
    if "role" in before and before["role"] != target.role:
        await audit.record(
            viewer,
            "user.role",
            target.id,
            {"from": str(before["role"]), "to": str(target.role)},
            owner_id=target.id,
        )


async def announce_revoked(bus: Bus, user_id: str) -> None:
    """Tell every API process to close `user_id`'s WebSockets (graph.sessions)."""
    try:
        await bus.publish(USERS_REVOKED_CHANNEL, user_id.encode())
    except (RedisError, OSError) as err:
        # The change stands; its sockets last until their access tokens expire.
        logger.error("user %s changed, but its WebSockets were not closed: %s", user_id, err)


async def promote_admin(email: str) -> Literal["promoted", "unchanged"] | None:
    """Make the user with `email` an ADMIN; None when there is no such user."""
    user = await User.find_one(User.email == normalise_email(email))
    if user is None:
        return None
    if user.role == Role.ADMIN:
        return "unchanged"
    await user.set({"role": Role.ADMIN})
    await _claim_first_admin(user)
    logger.info("user %s promoted to ADMIN from the command line", user.id)
    return "promoted"


async def create_admin(email: str, password: str, *, settings: ApiSettings) -> User:
    """Create an ADMIN (the operator's first one, from the command line)."""
    user = User(
        email=normalise_email(email),
        password_hash=await hash_password(check_password(password), settings),
        role=Role.ADMIN,
    )
    try:
        await user.insert()
    except DuplicateKeyError as err:
        raise Conflict("email: already registered") from err
    await ensure_personal_organization(user)
    await _claim_first_admin(user)
    logger.info("ADMIN %s created from the command line", user.id)
    return user


async def _claim_first_admin(user: User) -> None:
    # In development the first registration would otherwise become a second ADMIN.
    with contextlib.suppress(DuplicateKeyError):
        await Marker(id=FIRST_ADMIN_MARKER, claimed_by=str(user.id)).insert()
