"""Password reset by e-mail: a request never reveals whether the address is known;
the link's token sets a new password once and ends every session of the user.

The request does the same whatever the address: it counts the attempt and queues a
request entry in the outbox; the sender (api/mailer.py) looks the address up, and
only for a user makes a token and the mail (`prepare_mail`). So the answer, and its
timing, are the same for a known and an unknown address.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Final

from redis.asyncio import Redis

from core.settings import ApiSettings
from live.bus import Bus
from models.accounts import User
from models.email import MailKind, OutboxMail, TokenPurpose
from services import email_tokens, mail_messages, outbox, ratelimit
from services.accounts import announce_revoked, logout
from services.api_keys import revoke_all_api_keys
from services.errors import Unauthenticated
from services.mail_messages import Message
from services.passwords import hash_password
from services.validation import check_password, normalise_email

logger = logging.getLogger(__name__)

# The contract's "valid 1 hour".
RESET_TOKEN_TTL: Final = timedelta(hours=1)


async def request_password_reset(
    email: str, *, client_address: str, settings: ApiSettings, redis: Redis
) -> None:
    """Queue a reset e-mail for `email` if a user has it; RateLimited for a client
    address over its limit. Over the per-address limit nothing is queued, silently."""
    address = normalise_email(email)
    window = settings.rate_limit_window_seconds
    await ratelimit.take(
        redis,
        "password-reset",
        client_address,
        limit=settings.password_resets_per_address,
        window_seconds=window,
    )
    # Counted whether or not the address is known; over the limit the answer stays the
    # same (no RATE_LIMITED), so that nobody can flood an inbox or learn anything.
    sent = await ratelimit.hit(redis, "password-reset-email", address, window_seconds=window)
    if sent > settings.password_resets_per_email:
        logger.info("password reset request over the per-e-mail limit: no e-mail")
        return
    await outbox.enqueue(MailKind.PASSWORD_RESET, address)


async def prepare_mail(mail: OutboxMail, settings: ApiSettings) -> Message | None:
    """The reset e-mail for a request entry, with a new token; None when no user has
    the address (nothing is sent)."""
    user = await User.find_one(User.email == mail.to)
    if user is None or user.id is None:
        return None
    token = await email_tokens.issue(
        TokenPurpose.RESET_PASSWORD, user.id, user.email, ttl=RESET_TOKEN_TTL
    )
    return mail_messages.password_reset(settings.public_base_url, token)


async def reset_password(token: str, password: str, *, settings: ApiSettings, bus: Bus) -> User:
    """Set the password of the token's user and end all of its sessions; Unauthenticated
    for a bad, used or expired token (BadInput for a bad password keeps the token)."""
    check_password(password)
    record = await email_tokens.consume(TokenPurpose.RESET_PASSWORD, token)
    user = await User.get(record.user_id) if record is not None else None
    # A token sent to an address the user has since changed does not count.
    if record is None or user is None or user.email != record.email:
        raise Unauthenticated("Invalid or expired reset token.")
    # The link reached the address: it is verified too.
    await user.set(
        {"password_hash": await hash_password(password, settings), "email_verified": True}
    )
    await email_tokens.discard(TokenPurpose.RESET_PASSWORD, record.user_id)
    await end_every_session(user, bus)
    logger.info("user %s reset its password by e-mail", user.id)
    return user


async def end_every_session(user: User, bus: Bus) -> None:
    """What a password reset revokes: access tokens (the session version moves on),
    refresh tokens, other credentials (`revoke_other_credentials`), open WebSockets."""
    await logout(user)
    await revoke_other_credentials(user, bus)
    await announce_revoked(bus, str(user.id))


async def revoke_other_credentials(user: User, bus: Bus) -> None:
    """Credentials other than sessions that a reset ends: every API key of `user`
    (their WebSockets close by the announcement revoke_all_api_keys makes)."""
    if user.id is not None:
        await revoke_all_api_keys(user.id, bus=bus)
