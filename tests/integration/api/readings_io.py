"""Readings seeded straight into MongoDB, and the export/import endpoints over HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from bson import ObjectId

from models.readings import Reading
from tests.factories import Session


async def seed(device_id: str, start: datetime, count: int, *, step_s: float = 10) -> None:
    """`count` readings of two metrics, one every `step_s` seconds from `start`."""
    collection = Reading.get_pymongo_collection()
    for first in range(0, count, 1000):
        await collection.insert_many(
            [
                {
                    "_id": ObjectId(),
                    "device_id": ObjectId(device_id),
                    "timestamp": start + timedelta(seconds=i * step_s),
                    "values": [
                        {"metric": "temperature", "value": 20 + i / 8, "unit": "°C"},
                        {"metric": "humidity", "value": float(i % 100), "unit": None},
                    ],
                }
                for i in range(first, min(first + 1000, count))
            ]
        )


async def stored(device_id: str) -> list[dict[str, Any]]:
    """The device's readings as (timestamp, values), oldest first."""
    cursor = (
        Reading.get_pymongo_collection()
        .find({"device_id": ObjectId(device_id)}, {"timestamp": 1, "values": 1, "_id": 0})
        .sort([("timestamp", 1)])
    )
    return [doc async for doc in cursor]


def auth(session: Session | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {session.access_token}"} if session else {}


async def export(http: httpx.AsyncClient, session: Session | None, **params: str) -> httpx.Response:
    return await http.get("/export/readings", params=params, headers=auth(session))


async def import_(
    http: httpx.AsyncClient, session: Session | None, body: bytes, **params: str
) -> httpx.Response:
    return await http.post("/import/readings", params=params, content=body, headers=auth(session))
