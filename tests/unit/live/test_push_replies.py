"""The subscribed connection's reply parser (live.redis_bus.PushReplies)."""

from __future__ import annotations

import pytest
from redis.exceptions import ResponseError

from live.redis_bus import PushReplies

# What a subscribed connection is sent, RESP2 then RESP3.
WIRE = (
    b"*3\r\n$9\r\nsubscribe\r\n$3\r\nch1\r\n:1\r\n"
    b"*3\r\n$7\r\nmessage\r\n$3\r\nch1\r\n$10\r\nhello\r\nbye\r\n"
    b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
    b">3\r\n$7\r\nmessage\r\n$3\r\nch2\r\n$0\r\n\r\n"
    b"+PONG\r\n"
    b"_\r\n"
    b"$-1\r\n"
)
EXPECTED = [
    [b"subscribe", b"ch1", 1],
    [b"message", b"ch1", b"hello\r\nbye"],  # a payload may hold CRLF
    [b"pong", b""],
    [b"message", b"ch2", b""],
    b"PONG",
    None,
    None,
]


def test_parse_push_replies_whole() -> None:
    assert PushReplies().feed(WIRE) == EXPECTED


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16])
def test_parse_push_replies_any_chunking(size: int) -> None:
    replies = PushReplies()
    got = []
    for start in range(0, len(WIRE), size):
        got += replies.feed(WIRE[start : start + size])
    assert got == EXPECTED


def test_raise_push_replies_error() -> None:
    with pytest.raises(ResponseError, match="NOAUTH"):
        PushReplies().feed(b"-NOAUTH Authentication required.\r\n")
