"""GridFS storage of images: bounded streaming, nothing left behind, ranged reads."""

from __future__ import annotations

import hashlib
import os

import pytest

from firmware import storage
from firmware.storage import ImageCorrupt, ImageTooLarge


class Source:
    """An upload read in small blocks; optionally failing after some bytes."""

    def __init__(self, data: bytes, *, fail_after: int | None = None) -> None:
        self.data = data
        self.position = 0
        self.fail_after = fail_after
        self.largest_read = 0

    async def read(self, size: int = -1) -> bytes:
        if self.fail_after is not None and self.position >= self.fail_after:
            raise ConnectionResetError("client went away")
        self.largest_read = max(self.largest_read, size)
        block = self.data[self.position : self.position + size]
        self.position += len(block)
        return block


async def leftovers() -> tuple[int, int]:
    db = storage.database()
    return (
        await db[f"{storage.BUCKET}.files"].count_documents({}),
        await db[f"{storage.BUCKET}.chunks"].count_documents({}),
    )


async def test_store_image_streams_in_chunks_and_reads_back() -> None:
    data = os.urandom(3 * storage.CHUNK_SIZE + 17)
    source = Source(data)
    image = await storage.store_image(source, max_bytes=len(data))
    assert (image.size, image.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert source.largest_read == storage.READ_BLOCK  # never asked for the whole upload
    assert await leftovers() == (1, 4)
    found = await storage.find_image(image.file_id)
    assert found is not None
    whole = b"".join([block async for block in storage.read_range(found, 0, len(data) - 1)])
    assert whole == data
    start, end = storage.CHUNK_SIZE - 3, 3 * storage.CHUNK_SIZE + 2
    part = b"".join([block async for block in storage.read_range(found, start, end)])
    assert part == data[start : end + 1]
    with pytest.raises(ValueError, match="outside"):
        [block async for block in storage.read_range(found, 0, len(data))]
    await storage.delete_image(image.file_id)
    assert await leftovers() == (0, 0)
    await storage.delete_image(image.file_id)  # gone already: fine


async def test_store_image_over_limit_leaves_nothing() -> None:
    data = os.urandom(2 * storage.CHUNK_SIZE + 1)
    with pytest.raises(ImageTooLarge):
        await storage.store_image(Source(data), max_bytes=2 * storage.CHUNK_SIZE)
    assert await leftovers() == (0, 0)


async def test_store_image_interrupted_upload_leaves_nothing() -> None:
    data = os.urandom(3 * storage.CHUNK_SIZE)
    with pytest.raises(ConnectionResetError):
        await storage.store_image(Source(data, fail_after=2 * storage.CHUNK_SIZE), max_bytes=10**8)
    assert await leftovers() == (0, 0)


async def test_read_range_detects_missing_chunk() -> None:
    data = os.urandom(2 * storage.CHUNK_SIZE + 5)
    image = await storage.store_image(Source(data), max_bytes=len(data))
    await storage.database()[f"{storage.BUCKET}.chunks"].delete_one(
        {"files_id": image.file_id, "n": 1}
    )
    found = await storage.find_image(image.file_id)
    assert found is not None
    with pytest.raises(ImageCorrupt):
        [block async for block in storage.read_range(found, 0, len(data) - 1)]
