"""TTL indexes whose expiry is a setting: created, or changed in place when it differs."""

from __future__ import annotations

import logging
from typing import Any, Final

import pymongo
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import OperationFailure

logger = logging.getLogger(__name__)

# create_index with another expiry than the existing index's: IndexOptionsConflict (85),
# or IndexKeySpecsConflict (86) from servers that report it so.
_CONFLICTS: Final = frozenset({85, 86})


async def set_ttl(collection: AsyncCollection[Any], field: str, *, name: str, days: int) -> None:
    """Delete `collection`'s documents `days` days after their `field`: create the TTL
    index `name`, or change its expiry when it exists with another (collMod; no rebuild)."""
    seconds = days * 86400
    keys = [(field, pymongo.ASCENDING)]
    try:
        await collection.create_index(keys, name=name, expireAfterSeconds=seconds)
        return
    except OperationFailure as err:
        if err.code not in _CONFLICTS:
            raise
    try:
        await collection.database.command(
            {"collMod": collection.name, "index": {"name": name, "expireAfterSeconds": seconds}}
        )
    except OperationFailure as err:
        # A server without collMod (the development stand-in): build the index again.
        logger.info("collMod refused (%s): rebuilding TTL index %s", err, name)
        await collection.drop_index(name)
        await collection.create_index(keys, name=name, expireAfterSeconds=seconds)
    logger.info("%s now kept %d days", collection.name, days)
