"""`make run`'s embedded database keeps its data across restarts.

SecantusDB started exactly as devstack starts it (devstack.run.start_secantus: its own
process, WiredTiger files in a directory, a journal fsynced at every commit), written
to, stopped (Ctrl-C stops it with SIGTERM) or killed at once (SIGKILL: a crash), started
again over the same directory: it holds everything it acknowledged.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from bson import ObjectId
from pymongo import MongoClient
from pymongo.collection import Collection

from devstack.run import Supervisor, index_readings, start_secantus

DATABASE = "iot"
READINGS = 500


@pytest.fixture
def supervisors() -> Iterator[list[Supervisor]]:
    """Every Supervisor a test starts, stopped at its end whatever happened."""
    started: list[Supervisor] = []
    try:
        yield started
    finally:
        for supervisor in started:
            supervisor.stop_all()


def start(supervisors: list[Supervisor], data: Path) -> tuple[Supervisor, str]:
    supervisor = Supervisor()
    supervisors.append(supervisor)
    return supervisor, start_secantus(supervisor, data)


def write_readings(uri: str, device: ObjectId) -> None:
    """Readings as the worker writes them (insert_many), and the index `make run` adds."""
    now = datetime.now(UTC)
    client: MongoClient[dict[str, Any]]
    with MongoClient(uri) as client:
        readings: Collection[dict[str, Any]] = client[DATABASE]["readings"]
        readings.insert_many(
            [
                {
                    "device_id": device,
                    "timestamp": now - timedelta(seconds=10 * k),
                    "values": [{"metric": "temperature", "value": float(k)}],
                    "source": f"restart-{k}",
                }
                for k in range(READINGS)
            ],
            ordered=False,
        )
    index_readings(uri, DATABASE)


def held(uri: str, device: ObjectId) -> tuple[int, list[str], list[float]]:
    """The device's readings count, the collection's index names, the newest page's values."""
    client: MongoClient[dict[str, Any]]
    with MongoClient(uri) as client:
        readings: Collection[dict[str, Any]] = client[DATABASE]["readings"]
        page = readings.find({"device_id": device}).sort("timestamp", -1).limit(3)
        return (
            readings.count_documents({"device_id": device}),
            [index["name"] for index in readings.list_indexes()],
            [document["values"][0]["value"] for document in page],
        )


def test_data_survives_a_stop_and_start(tmp_path: Path, supervisors: list[Supervisor]) -> None:
    data, device = tmp_path / "secantus", ObjectId()
    first, uri = start(supervisors, data)
    write_readings(uri, device)
    first.stop_all()

    _, uri = start(supervisors, data)
    count, indexes, newest = held(uri, device)
    assert count == READINGS
    assert "device_id_1_timestamp_-1" in indexes
    assert newest == [0.0, 1.0, 2.0]


def test_a_crash_keeps_everything_acknowledged(
    tmp_path: Path, supervisors: list[Supervisor]
) -> None:
    data, device = tmp_path / "secantus", ObjectId()
    first, uri = start(supervisors, data)
    write_readings(uri, device)
    _, process = first.children[0]
    client: MongoClient[dict[str, Any]]
    with MongoClient(uri) as client:
        readings: Collection[dict[str, Any]] = client[DATABASE]["readings"]
        last = {"device_id": device, "timestamp": datetime.now(UTC), "source": "last"}
        readings.insert_one(last | {"values": [{"metric": "temperature", "value": -1.0}]})
        # Killed the moment that is acknowledged: without --sync-on-commit it was lost.
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)

    _, uri = start(supervisors, data)
    count, _, newest = held(uri, device)
    assert count == READINGS + 1
    assert newest == [-1.0, 0.0, 1.0]
