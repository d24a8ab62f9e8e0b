"""The `broadcast_photos` repository: photos from disk, stored once by content, uploaded to Telegram once.

A broadcast with a photo from disk stores the image's bytes here (in PostgreSQL, so a worker on any
host can send or resume it) and refers to it as `photo_url = 'tgms-photo:<sha256>'`; every rule for
photo broadcasts (the caption, its limit, editing the caption later) then applies unchanged.

Sending (workers/photo_upload.py): the first sender to need the photo takes the upload lease and
sends the bytes with its group's copy; Telegram answers with a `file_id`, stored here, and every
other copy is sent by that id. Whoever holds no lease and finds no file_id waits; a failed upload
gives the lease back at once (the next group uploads), and a dead uploader's lease is taken over as
soon as its worker stops heartbeating (or its time runs out).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from . import health
from .image_header import FIELD, check_photo
from .message_validation import ValidationError

REF_PREFIX = "tgms-photo:"
_REF = re.compile(r"^tgms-photo:([0-9a-f]{64})$")
FILENAME_LIMIT = 200

SQL_STORE = """
INSERT INTO broadcast_photos (sha256, content, media_type, filename, width, height)
VALUES (%(sha)s, %(content)s, %(type)s, %(name)s, %(w)s, %(h)s)
ON CONFLICT (sha256) DO NOTHING
"""

SQL_EXISTS = "SELECT 1 FROM broadcast_photos WHERE sha256 = %(sha)s"

SQL_INFO = """
SELECT filename, media_type, width, height, length(content), file_id IS NOT NULL, uploads
  FROM broadcast_photos WHERE sha256 = %(sha)s
"""

# Take the upload lease when nobody has uploaded the photo and nobody holds a live lease (one whose
# time is not over and whose worker still heartbeats: health's liveness rule); returns the bytes to
# upload. One statement: two senders never both get them.
SQL_TAKE_LEASE = f"""
UPDATE broadcast_photos AS p
   SET upload_by = %(holder)s, upload_worker = %(worker)s, upload_until = now() + make_interval(secs => %(lease)s)
 WHERE p.sha256 = %(sha)s AND p.file_id IS NULL
   AND (p.upload_until IS NULL OR p.upload_until < now() OR p.upload_by = %(holder)s
        OR NOT EXISTS (SELECT 1 FROM bot_health AS h WHERE h.worker_id = p.upload_worker AND {health.alive("h")}))
RETURNING p.content, p.filename
"""

SQL_CONTENT = "SELECT content, filename FROM broadcast_photos WHERE sha256 = %(sha)s"

SQL_FILE_ID = "SELECT file_id FROM broadcast_photos WHERE sha256 = %(sha)s"

SQL_UPLOADED = """
UPDATE broadcast_photos
   SET file_id = %(file_id)s, file_unique_id = %(unique)s, uploaded_at = now(), uploads = uploads + 1,
       upload_by = NULL, upload_until = NULL, upload_worker = NULL
 WHERE sha256 = %(sha)s
"""

SQL_RELEASE = """
UPDATE broadcast_photos SET upload_by = NULL, upload_until = NULL, upload_worker = NULL, uploads = uploads + 1
 WHERE sha256 = %(sha)s AND upload_by = %(holder)s
"""

# Telegram no longer knows the id (another bot token, or the file expired): upload again.
SQL_FORGET = "UPDATE broadcast_photos SET file_id = NULL WHERE sha256 = %(sha)s AND file_id = %(file_id)s"


@dataclass(frozen=True)
class StoredPhoto:
    filename: str
    media_type: str
    width: int
    height: int
    size: int
    uploaded: bool
    uploads: int


def ref(sha256: str) -> str:
    return REF_PREFIX + sha256


def sha_of(photo_url: str | None) -> str | None:
    """The stored photo's hash when `photo_url` refers to one, else None (a URL or nothing)."""
    if photo_url is None:
        return None
    match = _REF.match(photo_url)
    return match.group(1) if match else None


def is_ref(photo_url: str | None) -> bool:
    return sha_of(photo_url) is not None


def clean_filename(name: str | None) -> str:
    """A file name fit to show and to send as the upload's name: its last path part, printable, short."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(c for c in base if c.isprintable() and c not in "\"'")[:FILENAME_LIMIT].strip()
    return base or "photo"


async def store(conn: AsyncConnection[Any], data: bytes, filename: str | None) -> str:
    """Check the image against Telegram's photo limits (ValidationError("photo") naming the problem)
    and keep its bytes; the `photo_url` a broadcast uses for it. The same bytes are stored once."""
    info = check_photo(data)
    sha = hashlib.sha256(data).hexdigest()
    params = {
        "sha": sha,
        "content": data,
        "type": info.media_type,
        "name": clean_filename(filename),
        "w": info.width,
        "h": info.height,
    }
    await conn.execute(SQL_STORE, params)
    return ref(sha)


async def check_ref(conn: AsyncConnection[Any], photo_url: str | None) -> None:
    """ValidationError("photo") when `photo_url` names a stored photo that is not there."""
    sha = sha_of(photo_url)
    if sha is None:
        return
    cur = await conn.execute(SQL_EXISTS, {"sha": sha})
    if await cur.fetchone() is None:
        raise ValidationError(FIELD, f"no stored photo {sha[:12]}…: upload the file with the broadcast")


async def info(conn: AsyncConnection[Any], photo_url: str | None) -> StoredPhoto | None:
    sha = sha_of(photo_url)
    if sha is None:
        return None
    cur = await conn.execute(SQL_INFO, {"sha": sha})
    row = await cur.fetchone()
    return None if row is None else StoredPhoto(*row)


async def take_upload(
    conn: AsyncConnection[Any], sha256: str, holder: str, worker_id: str, lease_seconds: float, stale: float
) -> tuple[bytes, str] | None:
    """(bytes, filename) when this holder (a sender of worker `worker_id`) is now the one to upload;
    None when another holds a live lease. `stale`: seconds without a heartbeat that make a worker gone."""
    params = {"sha": sha256, "holder": holder, "worker": worker_id, "lease": lease_seconds, "stale": stale}
    cur = await conn.execute(SQL_TAKE_LEASE, params)
    row = await cur.fetchone()
    return None if row is None else (bytes(row[0]), str(row[1]))


async def content(conn: AsyncConnection[Any], sha256: str) -> tuple[bytes, str] | None:
    """(bytes, filename) of a stored photo, for a test send's own upload (it takes no lease and keeps
    no file_id: the broadcast's copies upload through their own bot)."""
    cur = await conn.execute(SQL_CONTENT, {"sha": sha256})
    row = await cur.fetchone()
    return None if row is None else (bytes(row[0]), str(row[1]))


async def file_id(conn: AsyncConnection[Any], sha256: str) -> str | None:
    cur = await conn.execute(SQL_FILE_ID, {"sha": sha256})
    row = await cur.fetchone()
    return None if row is None or row[0] is None else str(row[0])


async def uploaded(conn: AsyncConnection[Any], sha256: str, file_id: str, file_unique_id: str | None) -> None:
    await conn.execute(SQL_UPLOADED, {"sha": sha256, "file_id": file_id, "unique": file_unique_id})


async def release(conn: AsyncConnection[Any], sha256: str, holder: str) -> None:
    await conn.execute(SQL_RELEASE, {"sha": sha256, "holder": holder})


async def forget_file_id(conn: AsyncConnection[Any], sha256: str, file_id: str) -> None:
    await conn.execute(SQL_FORGET, {"sha": sha256, "file_id": file_id})
