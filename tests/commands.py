"""Counting the MongoDB commands code under test sends (round trips, N+1 checks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from beanie import init_beanie
from pymongo import AsyncMongoClient, monitoring

from core.settings import Settings
from models import DOCUMENT_MODELS
from models.commands import Command
from models.devices import Device
from models.email import AlertReminder, OutboxMail
from models.firmware import Firmware, FirmwareUpdate, FirmwareUpdateTarget

BACKGROUND_COLLECTIONS = frozenset(
    model.Settings.name
    for model in (
        Firmware,
        FirmwareUpdate,
        FirmwareUpdateTarget,
        # The API's e-mail sender and reminder check, and its command sweep.
        OutboxMail,
        AlertReminder,
        Command,
    )
)
# Tasks of the API's HTTP ingest (ingest/http_intake.py) that read and write on their own
# (its alert engine reloads a device's rules when the device changes, stores, lastSeen):
# not a request's commands.
BACKGROUND_TASKS = frozenset(
    {"alert-rules", "alert-raiser", "alert-refresh", "http-ingest-store", "http-ingest-status"}
)


def _in_background_task() -> bool:
    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop: not the API's
        return False
    return task is not None and task.get_name() in BACKGROUND_TASKS


class CommandCounter(monitoring.CommandListener):
    """Names of the commands sent while `recording`."""

    def __init__(self) -> None:
        self.recording = False
        self.commands: list[str] = []
        # The same commands, whole (their options: maxTimeMS...).
        self.documents: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        # The API's rollout dispatcher polls its own collections in the background.
        collection = event.command.get(event.command_name)
        if (
            self.recording
            and collection not in BACKGROUND_COLLECTIONS
            and not _in_background_task()
        ):
            self.commands.append(event.command_name)
            self.documents.append(dict(event.command))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture
async def command_counter(settings: Settings) -> AsyncIterator[CommandCounter]:
    """Beanie bound, for one test, to an instrumented client on the app's own database.

    PyMongo snapshots its command listeners when a client is built (global
    `monitoring.register` only reaches clients built afterwards) and offers no
    public way to add one to a live client; the app's client is built in its
    lifespan, before any test runs. Measuring `graph.loaders` alone would not
    prove the resolvers use the DataLoaders at all. So instead: the app reaches
    MongoDB only through Beanie documents, and Beanie's binding is public
    (`init_beanie`); rebinding it to a client that carries the listener, on the
    same server and database, lets the real HTTP request -> resolvers ->
    DataLoaders -> Beanie path run unchanged while every command it sends is
    seen. The original binding is restored afterwards.
    """
    original = Device.get_pymongo_collection().database
    counter = CommandCounter()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongodb_url, tz_aware=True, event_listeners=[counter]
    )
    try:
        await init_beanie(
            database=client[settings.mongodb_database], document_models=DOCUMENT_MODELS
        )
        assert Device.get_pymongo_collection().database.client is client
        yield counter
    finally:
        await init_beanie(database=original, document_models=DOCUMENT_MODELS)
        await client.close()
