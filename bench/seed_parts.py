"""Where bench.growth's seeding time goes: `python -m bench.seed_parts [--total 100000]`.

Seeds like `bench.growth.seed` (the write path: a pending marker, `insert_many`, the
rollups gathered in an `Accumulator` and flushed every two chunks) but times each part
of every 1,000-reading chunk, and prints the mean per chunk over each 10,000 readings:
mark, insert_many, then the flush split into the minute rollups' upserts, the hour
rollups' upserts, the devices' latest readings and the markers' deletion. With
MONGODB_URL set it uses that server (e.g. a stand-in started under bench.profiled),
else starts the stand-in (bench.harness.stack). Writes bench/results/seed_parts.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import defaultdict
from datetime import timedelta

from bson import ObjectId

from bench.growth import CHUNK, DEVICES, add_devices, reading_chunks
from bench.harness import print_table, stack, write_results
from core.database import open_database
from core.settings import CommonSettings
from ingest import rollups
from ingest.store import key_hours
from models.accounts import utcnow
from models.devices import Device
from models.readings import Reading
from models.rollups import RollupPending


async def run(url: str, total: int, every: int) -> None:
    settings = CommonSettings(
        _env_file=None,
        mongodb_url=url,
        mongodb_database=f"parts_{uuid.uuid4().hex[:8]}",
    )
    async with open_database(settings):
        devices = await add_devices(DEVICES)
        now = utcnow().replace(second=0, microsecond=0)
        readings = Reading.get_pymongo_collection()
        parts: dict[str, float] = defaultdict(float)
        chunks = 0
        # What an Accumulator gathers between flushes (ingest/rollups.py).
        gathered, markers = rollups.Summary.empty(), []
        rows: list[list[object]] = []
        started = time.perf_counter()
        for number, chunk in enumerate(reading_chunks(devices, total, 0, now)):
            first = number * CHUNK
            t = time.perf_counter()
            key_hours(chunk)  # as ingest.store.insert_readings
            summary = rollups.Summary.of(chunk)
            parts["summary"] += time.perf_counter() - t
            t = time.perf_counter()
            marker = await rollups.mark(summary)
            parts["mark"] += time.perf_counter() - t
            t = time.perf_counter()
            await readings.insert_many(chunk, ordered=False)
            parts["insert_many"] += time.perf_counter() - t
            gathered.merge(summary)
            markers.append(marker)
            chunks += 1
            if (first // CHUNK) % 2 == 1 or first + CHUNK >= total:  # as bench.growth
                await timed_flush(gathered, markers, parts)
                gathered, markers = rollups.Summary.empty(), []
            if (first + CHUNK) % every == 0:
                rows.append(
                    [
                        first + CHUNK,
                        *(round(parts[k] / chunks * 1000, 1) for k in COLUMNS),
                        round(sum(parts.values()) / chunks * 1000, 1),
                    ]
                )
                print(rows[-1], flush=True)
                parts.clear()
                chunks = 0
        seconds = time.perf_counter() - started
        load = os.getloadavg()[0]
        print_table(
            f"ms per {CHUNK}-reading chunk (mean over each {every}); total {seconds:.0f} s; "
            f"load {load:.2f}",
            ["stored", *COLUMNS, "all"],
            rows,
        )
        write_results(
            "seed_parts",
            {
                "chunk": CHUNK,
                "seconds": round(seconds, 1),
                "load_average_1m": round(load, 2),
                "ms_per_chunk": [
                    dict(zip(["stored", *COLUMNS, "all"], r, strict=True)) for r in rows
                ],
            },
        )


# summary: the hour keys and Summary.of, as insert_readings computes them.
COLUMNS = ["summary", "mark", "insert_many", "minute", "hour", "latest", "unmark"]


async def timed_flush(
    summary: rollups.Summary, markers: list[ObjectId], parts: dict[str, float]
) -> None:
    """What `Accumulator.flush` writes (`rollups.apply`, the markers' deletion), each
    write timed on its own."""
    for kind, deltas in summary.deltas.items():
        t = time.perf_counter()
        operations = [rollups.rollup_update(key, delta) for key, delta in deltas.items()]
        for start in range(0, len(operations), rollups.APPLY_SLICE):
            await kind.get_pymongo_collection().bulk_write(
                operations[start : start + rollups.APPLY_SLICE], ordered=False
            )
        parts["minute" if kind.grain == timedelta(minutes=1) else "hour"] += time.perf_counter() - t
    t = time.perf_counter()
    operations = [rollups.latest_update(device, doc) for device, doc in summary.latest.items()]
    await Device.get_pymongo_collection().bulk_write(operations, ordered=False)
    parts["latest"] += time.perf_counter() - t
    t = time.perf_counter()
    await RollupPending.get_pymongo_collection().delete_many({"_id": {"$in": markers}})
    parts["unmark"] += time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=10_000)
    args = parser.parse_args()
    url = os.environ.get("MONGODB_URL")
    if url is not None:
        asyncio.run(run(url, args.total, args.every))
        return
    with stack() as running:
        asyncio.run(run(running.mongodb_url, args.total, args.every))


if __name__ == "__main__":
    main()
