"""Queries of the audit log domain."""

from __future__ import annotations

import strawberry

from graph.audit.types import AuditEntryConnection
from graph.context import Info
from services import audit


@strawberry.type
class AuditQuery:
    @strawberry.field(
        description="Newest first. organizationId null: an ADMIN sees every entry, a user "
        "those it acted in and those about its own account and resources. An "
        "organization's log: NOT_FOUND until organizations exist."
    )
    async def audit_log(
        self,
        info: Info,
        organization_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> AuditEntryConnection:
        viewer = await info.context.require_user()
        size = info.context.page_size(first)
        log = await audit.list_entries(
            viewer, organization_id=organization_id, first=size, after=after
        )
        return AuditEntryConnection.from_page(log.page, log.actors)
