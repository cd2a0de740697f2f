"""Dashboards: an organization's, seen by its members only (an ADMIN too sees only those
of its own organizations); OWNER and OPERATOR change them."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

from pymongo import ReturnDocument

from core.settings import ApiSettings
from models.accounts import User, utcnow
from models.dashboards import Dashboard
from services import access
from services.dashboard_config import validate_config
from services.devices import organization_of_new
from services.errors import Conflict, NotFound
from services.memberships import ensure_organization_exists, ensure_personal_membership
from services.validation import clean_text, ensure_found, parse_id

logger = logging.getLogger(__name__)

MAX_NAME_LENGTH = 100


def _owned(viewer: User, dashboard_id: str, *, action: access.Action = "read") -> dict[str, Any]:
    """The filter of one dashboard the viewer may `action`; BadInput for a malformed id."""
    object_id = parse_id(dashboard_id, kind="dashboard")
    return {"_id": object_id, **access.visible_filter(viewer, "dashboard", action=action)}


async def _unwritable(viewer: User, dashboard_id: str) -> NoReturn:
    """A write matched nothing: NotFound unless the viewer sees the dashboard, Forbidden
    when it does (a VIEWER of its organization)."""
    dashboard = await get_dashboard(viewer, dashboard_id)
    access.require(viewer, "write", "dashboard", dashboard.organization_id)
    raise NotFound("Dashboard")  # deleted meanwhile


async def _config(viewer: User, config: object, settings: ApiSettings) -> dict[str, Any]:
    return await validate_config(
        viewer,
        config,
        max_bytes=settings.dashboard_config_max_bytes,
        max_points=settings.aggregate_max_buckets,
    )


async def create_dashboard(
    owner: User,
    *,
    name: str,
    config: object,
    settings: ApiSettings,
    organization_id: str | None = None,
) -> Dashboard:
    """A new dashboard made by `owner` in `organization_id` (omitted: its personal
    organization), its config checked against the widget schema."""
    clean_name = clean_text(name, field="name", max_length=MAX_NAME_LENGTH)
    checked = await _config(owner, config, settings)
    # Counted before inserting: concurrent creations may overshoot by a few, no more.
    if await Dashboard.find({"owner_id": owner.id}).count() >= settings.dashboards_per_user_max:
        raise Conflict(
            f"At most {settings.dashboards_per_user_max} dashboards per user; delete one first."
        )
    now = utcnow()
    if organization_id is None:
        await ensure_personal_membership(owner)
    organization = organization_of_new(owner, organization_id, kind="dashboard")
    if organization_id is not None:
        await ensure_organization_exists(organization)
    dashboard = Dashboard(
        owner_id=owner.id,
        organization_id=organization,
        name=clean_name,
        config=checked,
        created_at=now,
        updated_at=now,
    )
    await dashboard.insert()
    logger.info("dashboard %s created for user %s", dashboard.id, owner.id)
    return dashboard


async def list_dashboards(viewer: User) -> list[Dashboard]:
    """The dashboards of the viewer's organizations, newest first."""
    return await Dashboard.find(access.visible_filter(viewer, "dashboard")).sort("-_id").to_list()


async def get_dashboard(viewer: User, dashboard_id: str) -> Dashboard:
    """One of the viewer's dashboards; NotFound for a missing or foreign one alike."""
    return ensure_found(await Dashboard.find_one(_owned(viewer, dashboard_id)), "Dashboard")


async def update_dashboard(
    viewer: User,
    dashboard_id: str,
    *,
    name: str | None,
    config: object | None,
    settings: ApiSettings,
) -> Dashboard:
    """Rename a dashboard and/or replace its config; updated_at moves on any change."""
    query = _owned(viewer, dashboard_id, action="write")
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = clean_text(name, field="name", max_length=MAX_NAME_LENGTH)
    if config is not None:
        changes["config"] = await _config(viewer, config, settings)
    if not changes:
        return await get_dashboard(viewer, dashboard_id)
    changes["updated_at"] = utcnow()
    # One atomic step, owner in the filter: a foreign, missing or just deleted one is
    # NotFound, and nothing is written.
    raw = await Dashboard.get_pymongo_collection().find_one_and_update(
        query, {"$set": changes}, return_document=ReturnDocument.AFTER
    )
    if raw is None:
        await _unwritable(viewer, dashboard_id)
    updated: Dashboard = Dashboard.model_validate(raw)
    return updated


async def delete_dashboard(viewer: User, dashboard_id: str) -> None:
    """Remove one of the viewer's dashboards."""
    result = await Dashboard.get_pymongo_collection().delete_one(
        _owned(viewer, dashboard_id, action="write")
    )
    if result.deleted_count == 0:
        await _unwritable(viewer, dashboard_id)
    logger.info("dashboard %s deleted by user %s", dashboard_id, viewer.id)
