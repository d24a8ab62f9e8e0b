"""One copy of a broadcast as it goes out: its variant and tracked links, and a photo from disk sent by
upload once and by `file_id` after that.

- A plain broadcast's copy is its text (or photo URL + caption) with the debug code, and the
  broadcast's top-level `buttons` as `reply_markup`.
- A copy of an A/B or tracked broadcast carries its variant's text and URL buttons (the top-level
  buttons when its variant has none), its links rewritten to the copy's own tokens
  (`ab_assignment.copy_content`, one round trip) — the top-level buttons' links too.
- A paid broadcast's copy carries `allow_paid_broadcast` (whatever else it is).
- A stored photo (`photo_url = tgms-photo:<sha256>`): the first sender to need it takes the upload
  lease and sends the bytes with its copy; the `file_id` in Telegram's answer is stored and every
  later copy, in any worker, is sent by id. A sender that finds someone else uploading waits, before
  it records its intent (`ready`), so a crash while waiting leaves nothing ambiguous. A failed
  upload gives the lease back at once, so the next group uploads; an uploader whose worker died
  loses the lease once the worker stops heartbeating.
  A stored file_id Telegram no longer knows (the bot's token changed) is forgotten and the photo
  uploaded again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, cast

from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import ab_assignment, broadcast_photos, debug_code, link_tracking
from tgms_tui.backend.broadcasts import Broadcast
from tgms_tui.backend.buttons import Rows
from tgms_tui.backend.buttons import reply_markup as reply_markup_of

from .telegram_api import Message, TelegramClient
from .telegram_errors import BadRequest

log = logging.getLogger(__name__)

# The upload lease: longer than an upload of 10 MB can take through the client's own timeouts.
UPLOAD_LEASE_SECONDS = 120.0
WAIT_POLL_SECONDS = 0.1
WRONG_FILE_ID = "wrong file identifier"


class CopySender:
    """Sends copies of one broadcast for one sender (its own upload-lease holder name)."""

    def __init__(
        self,
        client: TelegramClient,
        db: AsyncConnectionPool,
        broadcast: Broadcast,
        *,
        ab: bool,
        worker_id: str,
        stale_seconds: float,
        buttons: Rows | None = None,
    ) -> None:
        self.client = client
        self.db = db
        self.b = broadcast
        self.ab = ab
        self.buttons = buttons  # the broadcast's top-level buttons (`broadcast_buttons`)
        self.worker_id = worker_id
        self.stale_seconds = stale_seconds
        self.holder = f"{worker_id}:{secrets.token_hex(4)}"
        self.photo_sha = broadcast_photos.sha_of(broadcast.photo_url)
        self.uploads = 0
        self._lease: tuple[bytes, str] | None = None  # the photo to upload, while this sender holds the lease
        self._file_id: str | None = None  # the stored photo's file_id, once known (no read per copy)

    @property
    def needs_file_id(self) -> bool:
        """A photo from disk whose file_id this sender does not know yet: call `ready` first."""
        return self.photo_sha is not None and self._file_id is None

    @property
    def uploading(self) -> bool:
        """This sender holds the upload lease: its next copy (one, alone) uploads the photo."""
        return self._lease is not None

    async def ready(self, timeout: float | None) -> None:
        """Called before the intent to send is recorded: for a photo from disk, wait until its file_id
        is known or this sender holds the upload lease. A sender waiting for someone else's upload
        then holds no 'sending' row, so a crash while it waits leaves nothing ambiguous.
        TimeoutError after `timeout` seconds (None: no limit)."""
        if self.photo_sha is None or self._lease is not None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            async with self.db.connection() as conn:
                self._file_id = await broadcast_photos.file_id(conn, self.photo_sha)
                if self._file_id:
                    return
                self._lease = await broadcast_photos.take_upload(
                    conn, self.photo_sha, self.holder, self.worker_id, UPLOAD_LEASE_SECONDS, self.stale_seconds
                )
            if self._lease is not None:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("still waiting for another sender's upload of the photo")
            await asyncio.sleep(WAIT_POLL_SECONDS)

    async def give_back(self) -> None:
        """The row this sender got ready for was not sent by it: hand the upload lease on at once."""
        if self._lease is None or self.photo_sha is None:
            return
        self._lease = None
        async with self.db.connection() as conn:
            await broadcast_photos.release(conn, self.photo_sha, self.holder)

    async def send(self, message_id: int, chat_id: int, code: str) -> Message:
        b = self.b
        body = b.caption if b.photo_url is not None else b.text
        reply_markup = reply_markup_of(self.buttons)
        if self.ab:
            async with self.db.connection() as conn:
                copy = await ab_assignment.copy_content(conn, message_id)
            if copy is not None:
                rendered, buttons = link_tracking.render(
                    copy.body if copy.body is not None else body, b.parse_mode, copy.buttons, copy.tokens, copy.base
                )
                body, reply_markup = rendered, link_tracking.markup(buttons)
        extra: dict[str, Any] = {} if reply_markup is None else {"reply_markup": reply_markup}
        if b.paid:  # allow_paid_broadcast on every copy of a paid broadcast, an upload included
            extra["allow_paid_broadcast"] = True
        if b.photo_url is None:
            return await self.client.send_message(
                chat_id, debug_code.appended(body, code, b.parse_mode), parse_mode=b.parse_mode, **extra
            )
        caption = debug_code.appended(body, code, b.parse_mode)
        if self.photo_sha is None:
            return await self.client.send_photo(chat_id, b.photo_url, caption=caption, parse_mode=b.parse_mode, **extra)
        return await self._send_stored(self.photo_sha, chat_id, caption, extra)

    async def _send_stored(self, sha: str, chat_id: int, caption: str, extra: dict[str, Any]) -> Message:
        if self._lease is not None:
            held, self._lease = self._lease, None
            return await self._upload(sha, held, chat_id, caption, extra)
        deadline = time.monotonic() + UPLOAD_LEASE_SECONDS * 2
        while True:
            file_id, upload = self._file_id, None
            if not file_id:
                async with self.db.connection() as conn:
                    file_id = await broadcast_photos.file_id(conn, sha)
                    if not file_id:
                        upload = await broadcast_photos.take_upload(
                            conn, sha, self.holder, self.worker_id, UPLOAD_LEASE_SECONDS, self.stale_seconds
                        )
            if file_id:
                try:
                    return await self.client.send_photo(
                        chat_id, file_id, caption=caption, parse_mode=self.b.parse_mode, **extra
                    )
                except BadRequest as exc:
                    if WRONG_FILE_ID not in exc.description.lower():
                        raise
                    log.warning(
                        "broadcast %d: Telegram no longer knows the photo's file_id: uploading it again",
                        self.b.broadcast_id,
                    )
                    self._file_id = None
                    async with self.db.connection() as conn:
                        await broadcast_photos.forget_file_id(conn, sha, file_id)
                    continue
            if upload is not None:
                return await self._upload(sha, upload, chat_id, caption, extra)
            if time.monotonic() > deadline:
                raise TimeoutError("waited too long for another sender's upload of the photo")
            await asyncio.sleep(WAIT_POLL_SECONDS)

    async def _upload(
        self, sha: str, upload: tuple[bytes, str], chat_id: int, caption: str, extra: dict[str, Any]
    ) -> Message:
        content, filename = upload
        try:
            self.uploads += 1
            message = await self.client.send_photo(
                chat_id, content, caption=caption, parse_mode=self.b.parse_mode, filename=filename, **extra
            )
        except BaseException:
            # Not uploaded (or unknown): the next group's sender takes the lease and uploads.
            async with self.db.connection() as conn:
                await asyncio.shield(broadcast_photos.release(conn, sha, self.holder))
            raise
        sizes = cast(dict[str, Any], message).get("photo") or []
        if sizes:
            largest = sizes[-1]
            self._file_id = str(largest["file_id"])
            async with self.db.connection() as conn:
                await broadcast_photos.uploaded(conn, sha, str(largest["file_id"]), largest.get("file_unique_id"))
            log.info("broadcast %d: photo uploaded once; later copies reuse its file_id", self.b.broadcast_id)
        return message
