"""Password hashing with argon2id (libpass), off the event loop."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from passlib.hash import argon2

from core.settings import ApiSettings

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_cost_kib: int) -> Any:
    return argon2.using(type="ID", rounds=time_cost, memory_cost=memory_cost_kib)


@lru_cache(maxsize=4)
def _dummy_hash(time_cost: int, memory_cost_kib: int) -> str:
    # Verified against when the e-mail is unknown, so both answers cost the same.
    return str(_hasher(time_cost, memory_cost_kib).hash("not-a-real-password"))


async def hash_password(password: str, settings: ApiSettings) -> str:
    """An argon2id hash of `password` with the configured cost."""
    hasher = _hasher(settings.argon2_time_cost, settings.argon2_memory_cost_kib)
    return str(await asyncio.to_thread(hasher.hash, password))


async def verify_password(password: str, password_hash: str | None, settings: ApiSettings) -> bool:
    """True when `password` matches; with no hash, spends the same time and says False."""
    if password_hash is None:
        dummy = _dummy_hash(settings.argon2_time_cost, settings.argon2_memory_cost_kib)
        await asyncio.to_thread(argon2.verify, password, dummy)
        return False
    return bool(await asyncio.to_thread(argon2.verify, password, password_hash))
