"""What the lifespan opens and every request shares."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from core.broker import BrokerAdmin
from core.bus import Bus
from core.database import Database
from core.settings import Settings


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    database: Database
    redis: Redis
    bus: Bus
    broker: BrokerAdmin
