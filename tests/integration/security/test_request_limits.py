"""Request bodies and query texts are bounded before anything parses or keeps them."""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import urlsplit

import pytest

from core.settings import Settings
from graph.document_cache import parsed_documents
from tests.client import Api
from tests.factories import register
from tests.integration.api.test_websocket import LEGACY_WS, TRANSPORT_WS
from tests.integration.graph.test_subscriptions import client as ws_client

FIVE_MIB = 5 * 1024 * 1024


async def raw_post(api_server: str, head: list[str], body: list[bytes]) -> bytes:
    """POST /graphql over a plain socket, `body` sent chunk by chunk while the server
    still reads; the status line and headers of its answer (within 10 s)."""
    address = urlsplit(api_server)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        lines = ["POST /graphql HTTP/1.1", f"Host: {address.netloc}", *head, "", ""]
        writer.write("\r\n".join(lines).encode())
        # The server may answer and close before the body is all sent.
        with contextlib.suppress(ConnectionError):
            for chunk in body:
                writer.write(chunk)
                await asyncio.wait_for(writer.drain(), 10)
        async with asyncio.timeout(10):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()


def chunked(data: bytes, size: int) -> list[bytes]:
    """`data` in chunked transfer encoding, without the final empty chunk."""
    return [
        b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size])
        for i in range(0, len(data), size)
    ]


async def test_post_declared_oversized_body_refused_unread(api_server: str) -> None:
    # 5 MiB announced; only its first KiB is ever sent.
    head = ["Content-Type: application/json", f"Content-Length: {FIVE_MIB}"]
    answer = await raw_post(api_server, head, [b'{"query": "' + b" " * 1024])
    assert answer.startswith(b"HTTP/1.1 413"), answer


async def test_post_chunked_oversized_body_refused_early(
    api_server: str, settings: Settings
) -> None:
    # No Content-Length: the server counts. 2 MiB sent of an endless body.
    padding = b" " * (2 * settings.http_max_body_bytes)
    head = ["Content-Type: application/json", "Transfer-Encoding: chunked"]
    answer = await raw_post(api_server, head, chunked(b'{"query": "' + padding, 64 * 1024))
    assert answer.startswith(b"HTTP/1.1 413"), answer


async def test_post_body_under_limit_executes(api: Api, settings: Settings) -> None:
    # Variables make the body large; the operation itself is small.
    padding = "x" * (settings.http_max_body_bytes // 2)
    result = await api.execute("{ __typename }", {"padding": padding})
    assert result.data == {"__typename": "Query"}


async def test_query_text_over_limit_refused_not_cached(api: Api, settings: Settings) -> None:
    # ~1 MB, nearly all of it a comment: a handful of tokens, so no other limit sees it.
    query = "{ __typename } # " + "x" * 1_000_000
    before = parsed_documents().currsize
    for _ in range(2):
        result = await api.execute(query)
        assert result.code == "QUERY_TOO_COMPLEX", result.body
        assert "characters" in result.message
    assert parsed_documents().currsize == before


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_subscribe_query_text_over_limit_refused_not_cached(
    api: Api, api_server: str, protocol: str
) -> None:
    session = await register(api)
    query = "subscription { readingAdded { deviceId } } # " + "x" * 200_000
    before = parsed_documents().currsize
    async with ws_client(api_server, session, protocol) as ws:
        await ws.subscribe("1", query)
        kind, op_id, payload = await ws.receive()
    assert (kind, op_id) == ("error", "1"), payload
    errors = payload if isinstance(payload, list) else [payload]
    assert [error["extensions"]["code"] for error in errors] == ["QUERY_TOO_COMPLEX"]
    assert parsed_documents().currsize == before
