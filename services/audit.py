"""The audit log: who did what security-relevant thing, when, to what.

`record` is called by the services after the action succeeded. It never makes the
action fail: the action is already committed (MongoDB gives no transaction across the
action's writes and this insert on a standalone server or the stand-in), so failing the
request would tell the client something did not happen that did (a retried
createDevice would make a second device). A lost entry is logged at ERROR instead, with
everything but the details, so the record survives in the logs. Entries are never
updated or deleted but by the retention (models.audit).

Details never hold a secret: callers pass names, ids, scopes and counts, never a
password, token, key or credential. An action done with an API key names the key's id
(`apiKeyId`, not secret).

Who reads an entry (`auditLog`): an ADMIN every entry; a user the entries it is the
actor of, and those about its own account or resources (`user_ids`). Organizations
(issue 16, later) add `organization_id` and the OWNER's view of it.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from beanie import PydanticObjectId
from pymongo.errors import PyMongoError

from models.accounts import User
from models.audit import AuditEntry
from services import access
from services.errors import NotFound
from services.keyset import TimePage, time_page

logger = logging.getLogger(__name__)

CURSOR_PREFIX: Final = "audit:"

# The API key the current request or WebSocket authenticated with (graph.context sets
# it before any resolver runs; tasks started later inherit it): its entries name the
# key, so an action done with a key is told from one done after a password login.
current_api_key: ContextVar[str | None] = ContextVar("current_api_key", default=None)


@dataclass(frozen=True, slots=True)
class AuditLogPage:
    page: TimePage[AuditEntry]
    # The users who acted in the page's entries, by id (a deleted one is missing).
    actors: dict[PydanticObjectId, User]


async def record(
    actor: User | None,
    action: str,
    target_id: object | None,
    details: dict[str, Any] | None = None,
    *,
    owner_id: PydanticObjectId | None = None,
) -> AuditEntry | None:
    """Append one entry: `actor` (None: unauthenticated) did `action` to `target_id`,
    which belongs to `owner_id` (who may read it besides the actor and ADMINs)."""
    readers = [user_id for user_id in (actor.id if actor else None, owner_id) if user_id]
    details = dict(details or {})
    if actor is not None and (key_id := current_api_key.get()) is not None:
        details["apiKeyId"] = key_id
    entry = AuditEntry(
        action=action,
        actor_id=actor.id if actor else None,
        target_id=str(target_id) if target_id is not None else None,
        details=details,
        user_ids=list(dict.fromkeys(readers)),
    )
    try:
        await entry.insert()
    except PyMongoError as err:
        logger.error(
            "audit entry lost: %s by %s on %s (%s)",
            action,
            entry.actor_id,
            entry.target_id,
            type(err).__name__,
        )
        return None
    return entry


async def list_entries(
    viewer: User, *, organization_id: str | None, first: int, after: str | None
) -> AuditLogPage:
    """The entries the viewer may read, newest first, with their actors; an
    organization's log is NotFound until organizations exist (issue 16)."""
    if organization_id is not None:
        # Organizations are not served yet: no organization id names anything.
        raise NotFound("Organization")
    page = await time_page(
        AuditEntry,
        access.visible_filter(viewer, "audit_entry"),
        prefix=CURSOR_PREFIX,
        start=None,
        end=None,
        first=first,
        after=after,
    )
    return AuditLogPage(page=page, actors=await _actors(page.items))


async def _actors(entries: list[AuditEntry]) -> dict[PydanticObjectId, User]:
    """The users who acted in `entries`, by id (one read for a page)."""
    ids = list({entry.actor_id for entry in entries if entry.actor_id is not None})
    if not ids:
        return {}
    found = await User.find({"_id": {"$in": ids}}).to_list()
    return {user.id: user for user in found if user.id is not None}
