"""E-mail verification: registration (and a new address) sends a link; using it marks
the address verified. Alert e-mails go to verified addresses only."""

from __future__ import annotations

import logging
from datetime import timedelta

from core.settings import ApiSettings
from models.accounts import User
from models.email import MailKind, TokenPurpose
from services import email_tokens, mail_messages, outbox
from services.errors import Unauthenticated

logger = logging.getLogger(__name__)


async def send_verification(user: User, settings: ApiSettings) -> None:
    """Queue a verification e-mail for the user's current address."""
    if user.id is None:
        raise ValueError("an unsaved user has no address to verify")
    ttl_hours = settings.email_verification_ttl_hours
    token = await email_tokens.issue(
        TokenPurpose.VERIFY_EMAIL, user.id, user.email, ttl=timedelta(hours=ttl_hours)
    )
    message = mail_messages.verification(settings.public_base_url, token, ttl_hours=ttl_hours)
    await outbox.enqueue(MailKind.VERIFY_EMAIL, user.email, message)


async def verify_email(token: str) -> User:
    """Mark the address the token was sent to verified; Unauthenticated for a bad, used
    or expired token, or one sent to an address the user has since changed."""
    record = await email_tokens.consume(TokenPurpose.VERIFY_EMAIL, token)
    if record is None:
        raise Unauthenticated("Invalid or expired verification token.")
    collection = User.get_pymongo_collection()
    # Only while the address is still the one the link went to.
    result = await collection.update_one(
        {"_id": record.user_id, "email": record.email}, {"$set": {"email_verified": True}}
    )
    user = await User.get(record.user_id)
    if user is None or result.matched_count == 0:
        raise Unauthenticated("Invalid or expired verification token.")
    logger.info("user %s verified its e-mail address", user.id)
    return user
