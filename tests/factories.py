"""Factories: users and devices created through the public API."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from tests.client import Api
from tests.contract import op

_counter = itertools.count(1)
PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Session:
    user_id: str
    email: str
    role: str
    access_token: str
    refresh_token: str


@dataclass(frozen=True)
class CreatedDevice:
    id: str
    mqtt_username: str
    mqtt_password: str
    token: str
    node: dict[str, Any]


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}{next(_counter)}@example.com"


async def register(api: Api, email: str | None = None, password: str = PASSWORD) -> Session:
    result = await api.execute(
        op("Register"), {"email": email or unique_email(), "password": password}
    )
    payload = result.data["register"]
    return Session(
        user_id=payload["user"]["id"],
        email=payload["user"]["email"],
        role=payload["user"]["role"],
        access_token=payload["accessToken"],
        refresh_token=payload["refreshToken"],
    )


async def admin_and_user(api: Api) -> tuple[Session, Session]:
    """The first registration (ADMIN) and a second one (USER)."""
    admin = await register(api, unique_email("admin"))
    user = await register(api)
    assert (admin.role, user.role) == ("ADMIN", "USER")
    return admin, user


async def create_device(
    api: Api, session: Session, name: str = "sensor", type: str = "esp32"
) -> CreatedDevice:
    result = await api.execute(
        op("CreateDevice"), {"name": name, "type": type}, token=session.access_token
    )
    payload = result.data["createDevice"]
    credentials = payload["credentials"]
    return CreatedDevice(
        id=payload["device"]["id"],
        mqtt_username=credentials["mqttUsername"],
        mqtt_password=credentials["mqttPassword"],
        token=credentials["token"],
        node=payload["device"],
    )
