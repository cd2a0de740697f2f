"""System tests: processes (APIs, workers, brokers, a browser) beside the session's stack; every test starts from empty collections and an empty Redis db."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
async def fresh_stack(clean_state: None) -> None:
    """The session's services, started on first use, emptied before each test."""
