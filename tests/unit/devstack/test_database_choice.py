"""Which embedded database `make run` starts: DEVSTACK_DATABASE, SecantusDB by default."""

from __future__ import annotations

import pytest

from devstack.run import Abort, embedded_database


def test_secantus_by_default_mongoeco_on_request() -> None:
    assert embedded_database({}) == "secantus"
    assert embedded_database({"DEVSTACK_DATABASE": ""}) == "secantus"
    assert embedded_database({"DEVSTACK_DATABASE": "mongoeco"}) == "mongoeco"


def test_an_unknown_database_is_refused_by_name() -> None:
    with pytest.raises(Abort, match="DEVSTACK_DATABASE must be one of secantus, mongoeco"):
        embedded_database({"DEVSTACK_DATABASE": "mongodb"})
