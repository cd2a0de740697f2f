"""Depth, alias, token and cost limits, and the masking of unexpected errors."""

from __future__ import annotations

import time

from core.settings import Settings
from models.accounts import User
from tests.client import Api
from tests.contract import op
from tests.factories import admin_and_user, create_device, register


async def test_refuse_depth_bomb_query_too_complex(api: Api, settings: Settings) -> None:
    depth = settings.graphql_max_depth + 1
    query = "{ " + "me { " * depth + "id" + " }" * depth + " }"
    started = time.monotonic()
    result = await api.execute(query)
    # Only the limit is reported: the other faults of such a document do not matter.
    assert result.codes == ["QUERY_TOO_COMPLEX"]
    assert "depth" in result.message
    assert time.monotonic() - started < 5


async def test_accept_deepest_real_query_within_depth(api: Api) -> None:
    session = await register(api)
    query = "{ devices { edges { node { latestReading { values { metric } } owner { id } } } } }"
    assert (await api.execute(query, token=session.access_token)).errors == []


async def test_refuse_alias_bomb_query_too_complex(api: Api, settings: Settings) -> None:
    session = await register(api)
    aliases = " ".join(f"a{i}: me {{ id }}" for i in range(settings.graphql_max_aliases + 1))
    started = time.monotonic()
    result = await api.execute("{ " + aliases + " }", token=session.access_token)
    assert result.code == "QUERY_TOO_COMPLEX"
    assert result.body.get("data") is None
    assert time.monotonic() - started < 5


async def test_refuse_alias_bomb_through_fragments_query_too_complex(
    api: Api, settings: Settings
) -> None:
    session = await register(api)
    half = settings.graphql_max_aliases // 2 + 1
    fields = " ".join(f"m{i}: me {{ id }}" for i in range(half))
    other = fields.replace("m", "n")
    query = f"query {{ ...A ...B }} fragment A on Query {{ {fields} }} fragment B on Query {{ {other} }}"
    result = await api.execute(query, token=session.access_token)
    assert result.code == "QUERY_TOO_COMPLEX"


async def test_refuse_token_bomb_query_too_complex(api: Api, settings: Settings) -> None:
    query = "{ me { " + "id " * settings.graphql_max_tokens + "} }"
    result = await api.execute(query)
    assert result.code == "QUERY_TOO_COMPLEX"
    assert "tokens" in result.message


async def test_refuse_depth_bomb_with_fragments_query_too_complex(
    api: Api, settings: Settings
) -> None:
    # The depth hidden in a chain of fragments counts as if it were written inline.
    depth = settings.graphql_max_depth + 1
    fragments = (
        " ".join(f"fragment F{i} on User {{ me {{ ...F{i + 1} }} }}" for i in range(depth))
        + f" fragment F{depth} on User {{ id }}"
    )
    result = await api.execute("{ me { ...F0 } } " + fragments)
    assert result.codes == ["QUERY_TOO_COMPLEX"]


async def test_refuse_costly_query_query_too_complex(api: Api, settings: Settings) -> None:
    session = await register(api)
    # Each alias asks for a page of the maximum size of devices with their owners.
    per_alias = settings.page_size_max * 4
    count = settings.graphql_max_cost // per_alias + 1
    aliases = " ".join(
        f"p{i}: devices(first: {settings.page_size_max}) "
        "{ edges { node { id owner { id } } } }"
        for i in range(count)
    )
    result = await api.execute("{ " + aliases + " }", token=session.access_token)
    assert result.code == "QUERY_TOO_COMPLEX"
    assert "cost" in result.message


async def test_mask_unexpected_error_internal(api: Api) -> None:
    admin, user = await admin_and_user(api)
    device = await create_device(api, user)
    orphaned = await User.get(user.user_id)
    assert orphaned is not None
    await orphaned.delete()
    result = await api.execute(op("Device"), {"id": device.id}, token=admin.access_token)
    assert result.code == "INTERNAL"
    assert result.message == "Internal server error."
    assert "Traceback" not in str(result.body)
    assert "LookupError" not in str(result.body)


async def test_validate_same_query_text_once(api: Api) -> None:
    """The limit rules are built once, so the validation cache can hit: before, every
    operation brought rule classes of its own and each one was validated afresh."""
    from strawberry.extensions.validation_cache import _get_validate_cache

    session = await register(api)
    query = "{ me { email } }  # test_validate_same_query_text_once"
    cache = _get_validate_cache(256)  # the size graph.schema gives ValidationCache
    before = cache.cache_info()
    for _ in range(3):
        assert (await api.execute(query, token=session.access_token)).errors == []
    after = cache.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 2)
