"""`python -m bench.baseline_api [--per-item-loaders] [--per-subscriber-bus] [--without NAME]`:
the API as a benchmark's baseline.

The API of `python -m api` with one part swapped for the cost that part removes,
so a benchmark measures the difference; the product has no switch for it:

- `--per-item-loaders`: each request's loaders resolve `latestReading`/`owner` one
  query per item and cache nothing, the N+1 the DataLoaders remove (bench/queries.py).
- `--per-subscriber-bus`: a Redis connection and reader per GraphQL subscription
  (bench.naive_bus) and strawberry's execution per subscriber, what the shared
  listener and live.sharing remove (bench/fanout.py's naive mode).
- `--without NAME` (repeatable): the API without one of live.compat's overrides of
  other projects' internals, to measure what it still gains (bench/fanout.py's
  without-NAME modes): lean-hooks, handshake-release, shared-results.

Without an option it is the API as it is.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack, asynccontextmanager
from functools import partial
from typing import Any
from unittest import mock

import strawberry
from beanie import PydanticObjectId
from strawberry.dataloader import DataLoader

import api.__main__
import api.app
import graph.context
from bench.naive_bus import PerSubscriberRedisBus
from core.settings import Settings
from graph.loaders import Loaders, load_latest_readings, load_users
from live import compat
from live.bus import Bus
from live.delivery import LiveDelivery
from models.accounts import User
from models.readings import Reading


class PerItemLoaders(Loaders):
    """The request's loaders without batching or cache: one query per key."""

    def __init__(self) -> None:
        # Not Loaders.__init__: the same loaders, built with a batch size of 1.
        self.users: DataLoader[PydanticObjectId, User | None] = DataLoader(
            load_fn=load_users, max_batch_size=1, cache=False
        )
        self.latest_readings: DataLoader[PydanticObjectId, Reading | None] = DataLoader(
            load_fn=load_latest_readings, max_batch_size=1, cache=False
        )


@asynccontextmanager
async def open_per_subscriber_bus(settings: Settings, redis: Any) -> AsyncIterator[Bus]:
    """live.bus.open_bus's place: a Redis connection per subscription."""
    async with PerSubscriberRedisBus(redis) as bus:
        yield bus


def _no_handshake_release(send: Any) -> None:
    return None


# --without NAME: what each patch puts back (the library's own behaviour).
WITHOUT: dict[str, Callable[[], Any]] = {
    "lean-hooks": lambda: mock.patch.object(
        compat.LeanHooksSchema,
        "create_extensions_runner",
        strawberry.Schema.create_extensions_runner,
    ),
    "handshake-release": lambda: mock.patch.object(
        api.app, "release_handshake", _no_handshake_release
    ),
    "shared-results": lambda: mock.patch.object(
        api.app, "LiveDelivery", partial(LiveDelivery, share=False)
    ),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_api", description=__doc__)
    parser.add_argument(
        "--per-item-loaders", action="store_true", help="one query per item, no DataLoaders"
    )
    parser.add_argument(
        "--per-subscriber-bus",
        action="store_true",
        help="a Redis connection per subscription, each subscriber executed on its own",
    )
    parser.add_argument(
        "--without",
        action="append",
        default=[],
        choices=sorted(WITHOUT),
        help="leave out one of live.compat's overrides (repeatable)",
    )
    args = parser.parse_args(argv)
    with ExitStack() as patches:
        if args.per_item_loaders:
            # Every request's context builds its loaders from graph.context's name.
            patches.enter_context(mock.patch.object(graph.context, "Loaders", PerItemLoaders))
        if args.per_subscriber_bus:
            # The lifespan opens the bus and the delivery state by api.app's names.
            patches.enter_context(mock.patch.object(api.app, "open_bus", open_per_subscriber_bus))
            patches.enter_context(WITHOUT["shared-results"]())
        for name in args.without:
            patches.enter_context(WITHOUT[name]())
        api.__main__.main()


if __name__ == "__main__":
    main()
