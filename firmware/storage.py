"""Firmware images in MongoDB GridFS (bucket `firmware`), streamed both ways in bounded memory.

Files follow the GridFS spec (`firmware.files`: _id, length, chunkSize, uploadDate,
filename, metadata; `firmware.chunks`: files_id, n, data), so PyMongo's
`gridfs.AsyncGridFSBucket` reads them and deletes them; the tests read uploads back
through it. Writing and ranged reading are done here, chunk by chunk, because of
two measured properties of PyMongo 4.20's bucket:

- `open_upload_stream` buffers chunk documents until 48 MB (`_UPLOAD_BUFFER_SIZE`)
  before one insert_many, so a 16 MiB image sat in memory whole (16.1 MiB held just
  before close, 32 MiB peak while encoding). Here each chunk is inserted as soon as
  it is full: one chunk (255 KiB) plus one read block are held, whatever the size.
- `open_download_stream` reads chunks through a cursor without a batch size, whose
  first batch may carry 16 MiB; here batches are READ_BATCH_CHUNKS chunks (~1 MiB),
  and a ranged read starts at the chunk holding its first byte.

An upload that fails (too large, a database error, a cancelled request) deletes the
chunks it wrote before the error propagates, and the files document is written
last, so no half-written image is ever visible.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final, Protocol

from bson import Binary, Int64, ObjectId
from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from models.accounts import utcnow
from models.firmware import Firmware

logger = logging.getLogger(__name__)

BUCKET: Final = "firmware"
CHUNK_SIZE: Final = 255 * 1024  # GridFS's default
READ_BLOCK: Final = 64 * 1024
READ_BATCH_CHUNKS: Final = 4

type Database = AsyncDatabase[dict[str, Any]]


class ImageTooLarge(Exception):
    """The stream went past the size limit; nothing of it was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


class ImageCorrupt(Exception):
    """A stored image's chunks are missing or of the wrong length."""


class Readable(Protocol):
    """What an upload is read through (Starlette's UploadFile is one)."""

    async def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True, slots=True)
class StoredImage:
    file_id: ObjectId
    size: int
    digest: bytes  # raw SHA-256

    @property
    def sha256(self) -> str:
        return self.digest.hex()


@dataclass(frozen=True, slots=True)
class ImageFile:
    file_id: ObjectId
    length: int
    chunk_size: int


def database() -> Database:
    """The database Beanie is bound to (the firmware documents' own)."""
    return Firmware.get_pymongo_collection().database


def bucket(db: Database | None = None) -> AsyncGridFSBucket:
    """PyMongo's GridFS bucket over the same collections."""
    return AsyncGridFSBucket(db if db is not None else database(), bucket_name=BUCKET)


async def ensure_indexes(db: Database | None = None) -> None:
    """The indexes the GridFS spec asks for (PyMongo's bucket creates them on first write)."""
    db = db if db is not None else database()
    await db[f"{BUCKET}.chunks"].create_index([("files_id", 1), ("n", 1)], unique=True)
    await db[f"{BUCKET}.files"].create_index([("filename", 1), ("uploadDate", 1)])


async def store_image(
    source: Readable,
    *,
    max_bytes: int,
    filename: str | None = None,
    metadata: dict[str, Any] | None = None,
    db: Database | None = None,
) -> StoredImage:
    """Stream `source` into GridFS, hashing as it goes; ImageTooLarge past `max_bytes`."""
    db = db if db is not None else database()
    chunks = db[f"{BUCKET}.chunks"]
    file_id = ObjectId()
    sha = hashlib.sha256()
    pending = bytearray()
    size = 0
    number = 0
    try:
        while block := await source.read(READ_BLOCK):
            size += len(block)
            if size > max_bytes:
                raise ImageTooLarge(max_bytes)
            sha.update(block)
            pending += block
            while len(pending) >= CHUNK_SIZE:
                data = Binary(bytes(pending[:CHUNK_SIZE]))
                await chunks.insert_one({"files_id": file_id, "n": number, "data": data})
                del pending[:CHUNK_SIZE]
                number += 1
        if pending:
            await chunks.insert_one({"files_id": file_id, "n": number, "data": Binary(pending)})
        await db[f"{BUCKET}.files"].insert_one(
            {
                "_id": file_id,
                "length": Int64(size),
                "chunkSize": CHUNK_SIZE,
                "uploadDate": utcnow(),
                "filename": filename,
                "metadata": metadata or {},
            }
        )
    except BaseException:
        # Whatever stopped the upload (limit, error, cancellation): leave no chunk behind.
        await _discard(db, file_id)
        raise
    return StoredImage(file_id=file_id, size=size, digest=sha.digest())


async def _discard(db: Database, file_id: ObjectId) -> None:
    try:
        await db[f"{BUCKET}.chunks"].delete_many({"files_id": file_id})
        await db[f"{BUCKET}.files"].delete_one({"_id": file_id})
    except PyMongoError as err:
        logger.warning("chunks of the failed upload %s not removed: %s", file_id, err)


async def delete_image(file_id: ObjectId, *, db: Database | None = None) -> None:
    """Remove an image's files document and chunks; gone already is fine."""
    try:
        await bucket(db).delete(file_id)
    except NoFile:
        # The files document is gone; orphaned chunks may still be there.
        await (db if db is not None else database())[f"{BUCKET}.chunks"].delete_many(
            {"files_id": file_id}
        )


async def find_image(file_id: ObjectId, *, db: Database | None = None) -> ImageFile | None:
    """An image's length and chunk size, or None."""
    db = db if db is not None else database()
    document = await db[f"{BUCKET}.files"].find_one({"_id": file_id})
    if document is None:
        return None
    return ImageFile(
        file_id=file_id, length=int(document["length"]), chunk_size=int(document["chunkSize"])
    )


async def read_range(
    image: ImageFile, start: int, end: int, *, db: Database | None = None
) -> AsyncIterator[bytes]:
    """Bytes start..end (inclusive) of an image, chunk by chunk; ImageCorrupt on a gap."""
    if not 0 <= start <= end < image.length:
        raise ValueError(f"range {start}-{end} outside 0-{image.length - 1}")
    db = db if db is not None else database()
    size = image.chunk_size
    first, last = start // size, end // size
    final = (image.length - 1) // size  # the file's last chunk, the only short one
    cursor = (
        db[f"{BUCKET}.chunks"]
        .find({"files_id": image.file_id, "n": {"$gte": first, "$lte": last}})
        .sort("n", 1)
        .batch_size(READ_BATCH_CHUNKS)
    )
    expected = first
    async for chunk in cursor:
        number = chunk["n"]
        data = bytes(chunk["data"])
        wanted = size if number < final else image.length - final * size
        if number != expected or len(data) != wanted:
            raise ImageCorrupt(f"image {image.file_id}: chunk {expected} missing or damaged")
        low = start - number * size if number == first else 0
        high = end - number * size + 1 if number == last else len(data)
        yield data[low:high]
        expected += 1
    if expected != last + 1:
        raise ImageCorrupt(f"image {image.file_id}: chunk {expected} missing")
