"""GraphQL types of the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry
from beanie import PydanticObjectId
from strawberry.scalars import JSON

from graph.accounts.types import User
from graph.pagination import Edge, PageInfo
from models.accounts import User as UserDocument
from models.audit import AuditEntry as AuditEntryDocument
from services.keyset import TimePage


@strawberry.type(description="One security-relevant action (docs/access.md#audit-log).")
class AuditEntry:
    id: strawberry.ID
    at: datetime
    action: str = strawberry.field(description="e.g. device.create, login.failed.")
    actor: User | None = strawberry.field(
        description="Who acted; null for an unauthenticated attempt or a deleted user."
    )
    target_id: strawberry.ID | None
    details: JSON = strawberry.field(description="Names, ids and counts; never a secret.")

    @classmethod
    def from_document(
        cls, entry: AuditEntryDocument, actors: dict[PydanticObjectId, UserDocument]
    ) -> Self:
        actor = actors.get(entry.actor_id) if entry.actor_id is not None else None
        return cls(
            id=strawberry.ID(str(entry.id)),
            at=entry.timestamp,
            action=entry.action,
            actor=User.from_document(actor) if actor is not None else None,
            target_id=strawberry.ID(entry.target_id) if entry.target_id is not None else None,
            details=JSON(entry.details),
        )


@strawberry.type(description="Newest first.")
class AuditEntryConnection:
    edges: list[Edge[AuditEntry]]
    page_info: PageInfo

    @classmethod
    def from_page(
        cls,
        page: TimePage[AuditEntryDocument],
        actors: dict[PydanticObjectId, UserDocument],
    ) -> Self:
        return cls(
            edges=[
                Edge(cursor=cursor, node=AuditEntry.from_document(item, actors))
                for cursor, item in zip(page.cursors, page.items, strict=True)
            ],
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                end_cursor=page.cursors[-1] if page.cursors else None,
            ),
        )
