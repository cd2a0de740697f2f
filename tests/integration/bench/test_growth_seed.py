"""bench.growth's fast seed leaves exactly what the write path leaves: the same readings,
rollup documents (sums to the last bit, versions), latest readings, no pending record;
also when it adds to an earlier seed, as bench.growth does from one size to the next."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from beanie import Document

from bench.growth import (
    add_devices,
    reading_chunks,
    seed_from_memory,
    seed_through_write_path,
)
from models.devices import Device
from models.readings import Reading
from models.rollups import ROLLUPS, RollupPending

NOW = datetime(2026, 11, 2, 22, 0, tzinfo=UTC)
WRITTEN: tuple[type[Document], ...] = (Reading, *ROLLUPS)


async def stored() -> dict[str, Any]:
    """Everything a seed writes, comparable with ==."""
    state: dict[str, Any] = {}
    for model in WRITTEN:
        collection = model.get_pymongo_collection()
        state[collection.name] = [doc async for doc in collection.find({}).sort("_id", 1)]
    state["latest"] = {
        doc["_id"]: doc.get("latest_reading")
        async for doc in Device.get_pymongo_collection().find({})
    }
    state["pending"] = await RollupPending.get_pymongo_collection().count_documents({})
    return state


async def forget_readings() -> None:
    models: list[type[Document]] = [*WRITTEN, RollupPending]
    for model in models:
        await model.get_pymongo_collection().delete_many({})
    await Device.get_pymongo_collection().update_many({}, {"$unset": {"latest_reading": ""}})


async def test_seed_from_memory_stores_what_the_write_path_stores() -> None:
    devices = await add_devices(3)
    # Two sizes, as bench.growth seeds them; chunks of 150 (flushes of 100 minutes):
    # several flushes a size, rollup documents spanning flushes and sizes.
    sizes = [
        list(reading_chunks(devices, total, already, NOW, chunk=150))
        for already, total in ((0, 900), (900, 2400))
    ]
    states = []
    for seed in (seed_through_write_path, seed_from_memory):
        for chunks in sizes:
            await seed(copy.deepcopy(chunks))
        states.append(await stored())
        await forget_readings()
    through_write_path, from_memory = states
    assert len(from_memory["readings"]) == 2400
    assert from_memory["pending"] == 0
    assert all(latest is not None for latest in from_memory["latest"].values())
    # Documents written by several flushes, and by both sizes (a day's documents).
    assert max(doc["version"] for doc in from_memory["rollups_minute"]) > 1
    assert max(doc["version"] for doc in from_memory["rollups_hour"]) > 4
    assert from_memory == through_write_path
