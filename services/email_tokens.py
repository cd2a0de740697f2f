"""Single-use tokens of e-mail links: random, stored as their SHA-256, with an expiry.

A token is consumed by deleting it in one atomic find_one_and_delete: of two uses at
once, one gets it. An expired token is refused whether or not the TTL index removed it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from beanie import PydanticObjectId

from models.accounts import utcnow
from models.email import EmailToken, TokenPurpose
from services.tokens import hash_opaque_token, new_opaque_token


async def issue(
    purpose: TokenPurpose, user_id: PydanticObjectId, email: str, *, ttl: timedelta
) -> str:
    """A new token for `user_id`; only its hash is stored."""
    token = new_opaque_token()
    await EmailToken(
        token_hash=hash_opaque_token(token),
        purpose=purpose,
        user_id=user_id,
        email=email,
        expires_at=utcnow() + ttl,
    ).insert()
    return token


async def consume(purpose: TokenPurpose, token: str) -> EmailToken | None:
    """The token's record, now used up; None when it is unknown, used, expired or of
    another purpose."""
    if not token or len(token) > 200:
        return None
    raw: dict[str, Any] | None = await EmailToken.get_pymongo_collection().find_one_and_delete(
        {
            "token_hash": hash_opaque_token(token),
            "purpose": purpose.value,
            "expires_at": {"$gt": utcnow()},
        }
    )
    return EmailToken.model_validate(raw) if raw is not None else None


async def discard(purpose: TokenPurpose, user_id: PydanticObjectId) -> None:
    """Forget every outstanding token of `purpose` for `user_id`."""
    await EmailToken.get_pymongo_collection().delete_many(
        {"user_id": user_id, "purpose": purpose.value}
    )
