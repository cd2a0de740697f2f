"""Unit tests: no servers. The suite's autouse `clean_state` (which starts MongoDB, the
broker and the API) is replaced here by one that needs nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def clean_state() -> Iterator[None]:
    yield
