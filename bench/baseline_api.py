"""`python -m bench.baseline_api [--per-item-loaders]`: the API as a benchmark's baseline.

The API of `python -m api` with one part swapped for the cost that part removes,
so a benchmark measures the difference; the product has no switch for it:

- `--per-item-loaders`: each request's loaders resolve `latestReading`/`owner` one
  query per item and cache nothing, the N+1 the DataLoaders remove (bench/queries.py).

Without an option it is the API as it is.
"""

from __future__ import annotations

import argparse
from unittest import mock

from beanie import PydanticObjectId
from strawberry.dataloader import DataLoader

import api.__main__
import graph.context
from graph.loaders import Loaders, load_latest_readings, load_users
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline_api", description=__doc__)
    parser.add_argument(
        "--per-item-loaders", action="store_true", help="one query per item, no DataLoaders"
    )
    args = parser.parse_args(argv)
    if args.per_item_loaders:
        # Every request's context builds its loaders from graph.context's name.
        with mock.patch.object(graph.context, "Loaders", PerItemLoaders):
            api.__main__.main()
    else:
        api.__main__.main()


if __name__ == "__main__":
    main()
