"""The MongoDB stand-in for development and tests: mongoeco's wire server.

`python -m devstack.mongo_standin --port 27017 [--data .data/mongo.sqlite]`

Real MongoDB is what production runs; this speaks the wire protocol so the
real PyMongo driver and Beanie are exercised without a server binary.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import signal
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def patch_insert_scan() -> None:
    """Stop mongoeco's wire inserts from scanning the whole collection.

    mongoeco 4.11's wire `insert` command calls `insert_one` per document, and a
    one-document insert passes `scan_payload_id=True` to its unique-key check,
    which walks every stored document: each insert costs O(collection size)
    (measured here: 333 docs/s at 500 documents, 25 docs/s at 3,000 in memory;
    50 -> 5 docs/s with SQLite). The scan only matters for numeric `_id`s
    (1 == 1.0), which the engines still scan for; an exact duplicate `_id` is
    caught by the storage-key lookup that precedes the scan.
    """
    from mongoeco.engines import MemoryEngine, SQLiteEngine

    for engine, name in (
        (MemoryEngine, "_ensure_unique_indexes"),
        (SQLiteEngine, "_validate_document_against_unique_indexes"),
    ):
        original = getattr(engine, name)
        if getattr(original, "__iot_patched__", False):
            continue

        @functools.wraps(original)
        def without_scan(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            kwargs["scan_payload_id"] = False
            return __original(self, *args, **kwargs)

        without_scan.__iot_patched__ = True  # type: ignore[attr-defined]
        setattr(engine, name, without_scan)


async def serve(host: str, port: int, data: Path | None, ready_file: Path | None) -> None:
    """Serve until SIGINT/SIGTERM; print the URI once listening."""
    from mongoeco.engines import MemoryEngine, SQLiteEngine
    from mongoeco.wire import AsyncMongoEcoProxyServer

    patch_insert_scan()
    if data is not None:
        data.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # owner only, if new
        engine: Any = SQLiteEngine(path=str(data))
    else:
        engine = MemoryEngine()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with AsyncMongoEcoProxyServer(engine=engine, host=host, port=port) as server:
        uri = server.address.uri
        print(f"mongo stand-in listening: {uri} ({data or 'in memory'})", flush=True)
        if ready_file is not None:
            await asyncio.to_thread(ready_file.write_text, uri)
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=27017)
    parser.add_argument("--data", type=Path, default=None, help="SQLite file; memory if omitted")
    parser.add_argument("--ready-file", type=Path, default=None, help="written with the URI")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.host, args.port, args.data, args.ready_file))


if __name__ == "__main__":
    main()
