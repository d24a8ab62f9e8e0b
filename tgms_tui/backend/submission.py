"""A new broadcast as the admin API, the CLI and the composer submit it: the broadcast's own fields
(`message_validation.validate_broadcast`) plus the options that live beside it — `buttons` (inline URL
buttons, buttons.py), `delete_after` (a retract that long after it goes out, followups.py) and
`test` / `test_chat_id` (send it to a test chat only, test_sends.py).

`split` takes the options out of a payload and checks them (ValidationError naming the field);
`submit` stores what they ask for in the caller's transaction and returns the answer every entry
point prints: `{"status": "ok", "message": "Broadcast enqueued", "broadcast_id", "groups"}`, or for a
test `{"status": "ok", "message": "Test send enqueued", "test_send_id", "chat_id", "debug_code"}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import AsyncConnection

from . import broadcasts, buttons, followups, test_sends
from .buttons import Rows
from .message_validation import BroadcastRequest, ValidationError

OPTIONS = ("buttons", "delete_after", "test", "test_chat_id")


@dataclass(frozen=True)
class Options:
    buttons: Rows | None = None
    delete_after: timedelta | None = None
    test: bool = False
    test_chat_id: Any = None


def split(data: Mapping[str, Any]) -> tuple[dict[str, Any], Options]:
    """(the broadcast's own fields, the checked options)."""
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


async def submit(
    conn: AsyncConnection[Any], req: BroadcastRequest, options: Options, by: str, configured_test_chat: int | None
) -> dict[str, Any]:
    """Store the broadcast (its buttons, its expiry) or the test send, in the caller's transaction."""
    if options.test:
        chat = test_sends.chat_for(options.test_chat_id, configured_test_chat)
        sent = await test_sends.request(conn, req, options.buttons, chat, by)
        return {
            "status": "ok",
            "message": "Test send enqueued",
            "test_send_id": sent.test_send_id,
            "chat_id": chat,
            "debug_code": sent.debug_code,
        }
    async with conn.transaction():
        broadcast_id, groups = await broadcasts.create_broadcast(conn, req, created_by=by)
        await buttons.attach(conn, broadcast_id, options.buttons)
        if options.delete_after is not None:
            await followups.schedule_expiry(conn, broadcast_id, options.delete_after, by)
    return {"status": "ok", "message": "Broadcast enqueued", "broadcast_id": broadcast_id, "groups": groups}
