"""Export and import with an API key, as the contract's CreateApiKey says: export needs
READ (WRITE includes it), import INGEST or WRITE; a key acts only for its owner."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.client import Api
from tests.factories import create_device, register
from tests.integration.accounts.helpers import create_key, with_key
from tests.integration.api.readings_io import export, import_, seed, stored

T0 = datetime(2025, 3, 1, tzinfo=UTC)
BODY = b"timestamp,metric,value,unit\n2025-03-01T00:00:00Z,temperature,21.5,\n"


@pytest.mark.parametrize(
    ("scopes", "status"), [(["READ"], 200), (["WRITE"], 200), (["INGEST"], 403)]
)
async def test_export_with_api_key_by_scope(api: Api, scopes: list[str], status: int) -> None:
    owner = await register(api)
    device = await create_device(api, owner)
    await seed(device.id, T0, 3)
    key, _ = await create_key(api, owner, scopes)
    response = await export(api.http, with_key(owner, key), deviceId=device.id, format="csv")
    assert response.status_code == status, response.text
    if status == 200:
        assert len(response.text.strip().splitlines()) == 1 + 3 * 2  # header, 2 metrics each


@pytest.mark.parametrize(
    ("scopes", "status"), [(["INGEST"], 200), (["WRITE"], 200), (["READ"], 403)]
)
async def test_import_with_api_key_by_scope(api: Api, scopes: list[str], status: int) -> None:
    owner = await register(api)
    device = await create_device(api, owner)
    key, _ = await create_key(api, owner, scopes)
    response = await import_(api.http, with_key(owner, key), BODY, deviceId=device.id, format="csv")
    assert response.status_code == status, response.text
    assert len(await stored(device.id)) == (1 if status == 200 else 0)


async def test_api_key_other_users_device_not_found_either_way(api: Api) -> None:
    victim = await register(api)
    device = await create_device(api, victim)
    await seed(device.id, T0, 3)
    attacker = await register(api)
    key, _ = await create_key(api, attacker, ["WRITE", "INGEST"])
    as_attacker = with_key(attacker, key)
    response = await export(api.http, as_attacker, deviceId=device.id)
    assert response.status_code == 404
    assert "2025" not in response.text
    response = await import_(api.http, as_attacker, BODY, deviceId=device.id, format="csv")
    assert response.status_code == 404
    assert len(await stored(device.id)) == 3
