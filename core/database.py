"""MongoDB through PyMongo's native async client, with Beanie on top."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from beanie import init_beanie
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase

from core.settings import Settings
from models import DOCUMENT_MODELS

type Database = AsyncDatabase[dict[str, Any]]


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """Connect, create indexes and bind every Beanie document; close on exit."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_url,
        tz_aware=True,
        serverSelectionTimeoutMS=5000,
        appname="iotplatform",
    )
    try:
        database = client[settings.mongodb_database]
        await init_beanie(database=database, document_models=DOCUMENT_MODELS)
        yield database
    finally:
        await client.close()


async def ping(database: Database) -> None:
    """Raise unless the server answers."""
    await database.command("ping")
