"""The start-up migration to organizations, on a database as the code before
organizations wrote it: run twice (and twice at once), then used through the API."""

from __future__ import annotations

import asyncio
from typing import Any

from beanie import Document, PydanticObjectId

from core.settings import Settings
from models.accounts import User
from models.alerts import Alert, AlertKind, AlertRule, NotificationWebhook, Severity
from models.dashboards import Dashboard
from models.devices import Device
from models.organizations import Organization
from models.platform import Marker
from services.org_migration import ORGANIZATIONS_MARKER, migrate_to_organizations
from services.passwords import hash_password
from tests.client import Api
from tests.contract import op
from tests.factories import PASSWORD

OWNED_MODELS: tuple[type[Document], ...] = (
    Device,
    Dashboard,
    AlertRule,
    Alert,
    NotificationWebhook,
)


def as_stored_before(document: Document) -> dict[str, Any]:
    """The document as the code before organizations wrote it: no organization_id."""
    if document.id is None:
        document.id = PydanticObjectId()
    # As Beanie writes it: without None fields where the model keeps no nulls (alerts).
    raw: dict[str, Any] = document.model_dump(
        by_alias=True,
        exclude={"organization_id"},
        exclude_none=not document.get_settings().keep_nulls,
    )
    return raw


async def old_database(settings: Settings, users: int = 3) -> list[PydanticObjectId]:
    """Users with a device, a dashboard, a rule, an alert and a webhook each, and no
    organization anywhere; the users' ids."""
    password_hash = await hash_password(PASSWORD, settings)
    ids = []
    for number in range(users):
        user = User(email=f"old{number}@example.com", password_hash=password_hash)
        user.id = PydanticObjectId()
        await User.get_pymongo_collection().insert_one(user.model_dump(by_alias=True))
        device_id = PydanticObjectId()
        documents: list[Document] = [
            Device(
                id=device_id,
                owner_id=user.id,
                name=f"old device {number}",
                type="esp32",
                mqtt_username=str(device_id),
                mqtt_password_hash="$7$101$x$y",
            ),
            Dashboard(owner_id=user.id, name="Home", config={"layout": {}, "widgets": []}),
            AlertRule(owner_id=user.id, device_id=device_id, metric="temp", max_value=30.0),
            Alert(
                owner_id=user.id,
                device_id=device_id,
                kind=AlertKind.THRESHOLD,
                message="temp above 30",
                severity=Severity.WARNING,
            ),
            NotificationWebhook(user_id=user.id, url="https://example.com/hook", secret_nonce="n"),
        ]
        for document in documents:
            await type(document).get_pymongo_collection().insert_one(as_stored_before(document))
        ids.append(user.id)
    return ids


async def test_migrate_old_database_twice(api: Api, settings: Settings) -> None:
    user_ids = await old_database(settings)
    assert await Organization.get_pymongo_collection().count_documents({}) == 0

    first = await migrate_to_organizations()
    assert first == {
        "organizations": 3,
        "devices": 3,
        "dashboards": 3,
        "alert_rules": 3,
        "alerts": 3,
        "notification_webhooks": 3,
    }
    assert await Marker.get(ORGANIZATIONS_MARKER) is not None
    # Done: the second run is one read of the marker.
    assert await migrate_to_organizations() == {}

    for user_id in user_ids:
        organization = await Organization.get(user_id)
        assert organization is not None
        assert organization.personal_of == user_id
        assert [(m.user_id, m.role.value) for m in organization.members] == [(user_id, "OWNER")]
    for model in OWNED_MODELS:
        collection = model.get_pymongo_collection()
        assert await collection.count_documents({"organization_id": {"$exists": False}}) == 0
        async for raw in collection.find({}):
            owner = raw.get("owner_id", raw.get("user_id"))
            assert raw["organization_id"] == owner, model


async def test_migrate_without_marker_changes_nothing_more(api: Api, settings: Settings) -> None:
    await old_database(settings, users=2)
    await migrate_to_organizations()
    before = {
        model.get_collection_name(): await model.get_pymongo_collection().find({}).to_list()
        for model in (*OWNED_MODELS, Organization)
    }
    # As if a process died before claiming the marker: everything is done already.
    await Marker.get_pymongo_collection().delete_many({})
    again = await migrate_to_organizations()
    assert set(again.values()) == {0}
    after = {
        model.get_collection_name(): await model.get_pymongo_collection().find({}).to_list()
        for model in (*OWNED_MODELS, Organization)
    }
    assert after == before


async def test_migrate_concurrently_api_processes(api: Api, settings: Settings) -> None:
    user_ids = await old_database(settings, users=4)
    results = await asyncio.gather(*(migrate_to_organizations() for _ in range(3)))
    assert sum(result.get("organizations", 0) for result in results) == 4
    assert sum(result.get("devices", 0) for result in results) == 4
    organizations = Organization.get_pymongo_collection()
    assert await organizations.count_documents({}) == len(user_ids)


async def test_migrated_user_keeps_its_devices_through_api(api: Api, settings: Settings) -> None:
    [user_id] = await old_database(settings, users=1)
    await migrate_to_organizations()
    login = await api.execute(op("Login"), {"email": "old0@example.com", "password": PASSWORD})
    token = login.data["login"]["accessToken"]
    devices = (await api.execute(op("Devices"), token=token)).data["devices"]
    assert [edge["node"]["name"] for edge in devices["edges"]] == ["old device 0"]
    device_id = devices["edges"][0]["node"]["id"]
    renamed = await api.execute(op("UpdateDevice"), {"id": device_id, "name": "n"}, token=token)
    assert renamed.data["updateDevice"]["name"] == "n"
    assert len((await api.execute(op("Dashboards"), token=token)).data["dashboards"]) == 1
    rules = await api.execute(op("AlertRules"), {"deviceId": device_id}, token=token)
    assert len(rules.data["alertRules"]) == 1
    alerts = await api.execute(op("Alerts"), {}, token=token)
    assert len(alerts.data["alerts"]["edges"]) == 1
    organizations = await api.execute(op("Organizations"), token=token)
    assert [o["id"] for o in organizations.data["organizations"]] == [str(user_id)]
