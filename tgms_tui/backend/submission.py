"""A new broadcast as the admin API (JSON or multipart), the CLI and the composer submit it — the one
path every entry point takes:

- the broadcast's own fields (`message_validation.validate_broadcast`, once per A/B variant);
- `buttons` (inline URL buttons under every copy, buttons.py — the one button validator, also used
  for each variant's buttons);
- `delete_after` (a retract that long after it goes out, followups.py);
- `test` / `test_chat_id` (send it to a test chat only, test_sends.py);
- `variants`, `track_clicks`, `holdout` (A/B variants and click tracking, broadcast_variants.py);
- a photo from disk: its bytes, stored in `broadcast_photos` with the broadcast
  (`photo_url = tgms-photo:<sha256>`);
- `paid` (Telegram's `allow_paid_broadcast`, a field of the broadcast itself, validate_broadcast):
  the answer then adds `"paid": true, "estimated_stars"` (paid_broadcasts.py). A test send is
  never paid (one message to one chat needs no paid rate).

`prepare` takes a payload apart and checks it (ValidationError naming the field); `submit` stores
what it asks for in ONE transaction — the photo, the broadcast, its A/B rows, its buttons, its expiry,
or the test send(s) — so a refusal at any step stores nothing, not even the photo. It returns the
answer every entry point prints: `{"status": "ok", "message": "Broadcast enqueued", "broadcast_id",
"groups"}` (+ `paid`, `estimated_stars` for a paid one), or for a test `{"status": "ok", "message":
"Test send enqueued", "test_send_id", "chat_id", "debug_code", "test_send_ids"}` (one test send per
A/B variant, `test_send_id` the first).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from . import broadcast_photos, broadcast_variants, buttons, followups, paid_broadcasts, test_sends
from .broadcast_variants import AbRequest
from .buttons import Rows
from .image_header import check_photo
from .message_validation import BroadcastRequest, ValidationError

OPTIONS = ("buttons", "delete_after", "test", "test_chat_id")


@dataclass(frozen=True)
class Options:
    buttons: Rows | None = None
    delete_after: timedelta | None = None
    test: bool = False
    test_chat_id: Any = None


@dataclass(frozen=True)
class Submission:
    """A checked broadcast: its fields, its options, its A/B part and the photo file to store with it."""

    req: BroadcastRequest
    options: Options = Options()
    ab: AbRequest | None = None
    photo: tuple[bytes, str] | None = None  # (bytes, file name)


def split(data: Mapping[str, Any]) -> tuple[dict[str, Any], Options]:
    """(the broadcast's own fields with its A/B fields, the checked options)."""
    own = {k: v for k, v in data.items() if k not in OPTIONS}
    test = data.get("test", False)
    if test is None:
        test = False
    if not isinstance(test, bool):
        raise ValidationError("test", "must be true or false")
    if "test_chat_id" in data and data["test_chat_id"] is not None and not test:
        raise ValidationError("test_chat_id", 'only with "test": true')
    return own, Options(
        buttons=buttons.validate(data.get("buttons")),
        delete_after=followups.parse_delete_after(data.get("delete_after")),
        test=test,
        test_chat_id=data.get("test_chat_id"),
    )


def photo_ref(content: bytes) -> str:
    """The `photo_url` a broadcast carries for a photo file with these bytes."""
    return broadcast_photos.ref(hashlib.sha256(content).hexdigest())


def prepare(data: Mapping[str, Any], public_base_url: str | None, photo: tuple[bytes, str] | None = None) -> Submission:
    """Check a payload (and the photo file sent with it, which becomes its `photo_url`)."""
    if not isinstance(data, Mapping):
        raise ValidationError("body", "expected a JSON object")
    own, options = split(data)
    if photo is not None:
        ref = photo_ref(photo[0])  # the composer shows it already as the photo_url
        if own.get("photo_url") not in (None, "", ref) or own.get("text") not in (None, ""):
            name = "text" if own.get("text") not in (None, "") else "photo_url"
            raise ValidationError(name, "the photo file is the message: give a caption, not text or photo_url")
        check_photo(photo[0])
        own["photo_url"] = ref
    req, ab = broadcast_variants.split_request(own, public_base_url)
    if options.test and ab is not None and ab.holdout:
        raise ValidationError("holdout", "a test send goes to one chat: nothing to hold back")
    return Submission(req, options, ab, photo)


async def submit(
    conn: AsyncConnection[Any], sub: Submission, by: str, configured_test_chat: int | None
) -> dict[str, Any]:
    """Store the photo and the broadcast (A/B rows, buttons, expiry) or the test send(s), in one
    transaction; a refusal (ValidationError) rolls all of it back."""
    async with conn.transaction():
        if sub.photo is not None:
            await broadcast_photos.store(conn, *sub.photo)
        if sub.options.test:
            chat = test_sends.chat_for(sub.options.test_chat_id, configured_test_chat)
            sent = await test_sends.request(conn, sub.req, sub.options.buttons, chat, by, sub.ab)
            return {
                "status": "ok",
                "message": "Test send enqueued",
                "test_send_id": sent[0].test_send_id,
                "chat_id": chat,
                "debug_code": sent[0].debug_code,
                "test_send_ids": [t.test_send_id for t in sent],
            }
        broadcast_id, groups = await broadcast_variants.create(conn, sub.req, sub.ab, by)
        await buttons.attach(conn, broadcast_id, sub.options.buttons)
        if sub.options.delete_after is not None:
            await followups.schedule_expiry(conn, broadcast_id, sub.options.delete_after, by)
    answer: dict[str, Any] = {"status": "ok", "message": "Broadcast enqueued", "broadcast_id": broadcast_id}
    answer["groups"] = groups
    if sub.req.paid:  # the most it can cost, for the caller's records
        answer.update(paid=True, estimated_stars=paid_broadcasts.estimated_stars(groups))
    return answer
