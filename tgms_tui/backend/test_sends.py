"""Test sends: a broadcast, before it goes out, sent to one test chat exactly as each group will get
it — the same text or photo and caption, parse mode, buttons, and a debug code at its end. An A/B
broadcast's test sends each variant (one message each, in order, its own buttons or the broadcast's);
its links go as written (no tokens exist before it starts, and a test click must not count). A
photo from disk is stored with the test send and uploaded by the test-send job itself, whose
`file_id` is not kept: the broadcast's own first copy uploads it through the broadcast's bot.

The debug code is the one the broadcast's first group would get: the id is only known once the
broadcast is stored, so it is the id it will most likely get (`broadcasts.next_id`). A test send
stores no broadcast and no `sent_messages` row, so no group is ever touched and nothing counts
against a group; it is one `broadcast_test_sends` row and a `tgms_broadcast_test_send` job
(workers/test_sends.py) that records `sent` (with Telegram's message id) or `failed` (Telegram's
reason). The chat is the one the operator names, else `TGMS_TEST_CHAT_ID`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from . import broadcasts, debug_code, queue
from .broadcast_variants import AbRequest
from .buttons import Rows
from .message_validation import BroadcastRequest, ValidationError

JOB_TYPE = "tgms_broadcast_test_send"
FIELD = "test_chat_id"
MAX_RETRIES = 5

SQL_INSERT = """
INSERT INTO broadcast_test_sends (chat_id, content, debug_code, requested_by)
VALUES (%(chat)s, %(content)s, %(code)s, %(by)s) RETURNING test_send_id
"""
SQL_SET_JOB = "UPDATE broadcast_test_sends SET job_id = %(job)s WHERE test_send_id = %(t)s"
SQL_GET = """
SELECT test_send_id, chat_id, content, debug_code, status, telegram_message_id, error, requested_by, created_at,
       finished_at
  FROM broadcast_test_sends WHERE test_send_id = %(t)s
"""
SQL_FINISH = """
UPDATE broadcast_test_sends SET status = %(status)s, telegram_message_id = %(message)s, error = %(error)s,
       finished_at = now()
 WHERE test_send_id = %(t)s AND status = 'pending'
"""


@dataclass(frozen=True, slots=True)
class TestSend:
    __test__: ClassVar[bool] = False  # not a pytest test class
    test_send_id: int
    chat_id: int
    content: dict[str, Any]
    debug_code: str
    status: str
    telegram_message_id: int | None
    error: str | None
    requested_by: str
    created_at: datetime
    finished_at: datetime | None

    @property
    def message(self) -> str | None:
        """The text (or caption) as the chat gets it, with the debug code at its end."""
        body = self.content.get("caption") if self.content.get("photo_url") else self.content.get("text")
        return debug_code.appended(body, self.debug_code, self.content.get("parse_mode"))

    def as_json(self) -> dict[str, Any]:
        return {
            "test_send_id": self.test_send_id,
            "chat_id": self.chat_id,
            "status": self.status,
            "debug_code": self.debug_code,
            "telegram_message_id": self.telegram_message_id,
            "error": self.error,
            "requested_by": self.requested_by,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
        }


def chat_for(given: Any, configured: int | None) -> int:
    """The test chat: the one named (`test_chat_id`), else TGMS_TEST_CHAT_ID; ValidationError if none."""
    if given is None or given == "":
        if configured is None:
            raise ValidationError(FIELD, "no test chat: give test_chat_id or set TGMS_TEST_CHAT_ID")
        return configured
    if isinstance(given, bool):
        raise ValidationError(FIELD, "expected a chat id (an integer)")
    try:
        chat = int(given)
    except (TypeError, ValueError):
        raise ValidationError(FIELD, f"expected a chat id (an integer), got {str(given)[:40]!r}") from None
    if chat == 0 or not -(2**63) <= chat < 2**63:
        raise ValidationError(FIELD, f"not a Telegram chat id: {chat}")
    return chat


async def request(
    conn: AsyncConnection[Any],
    req: BroadcastRequest,
    rows: Rows | None,
    chat_id: int,
    by: str,
    ab: AbRequest | None = None,
) -> list[TestSend]:
    """Record the test send(s) and enqueue their jobs in the caller's transaction: one for a broadcast,
    one per variant of an A/B broadcast (in order, each with its own buttons or the broadcast's).
    Refuses (ValidationError) what Telegram would refuse with the debug code appended, as a real send
    would be refused. Links go as written: a test send has no tracked links and counts no click."""
    photo = req.photo_url is not None
    plain = (req.caption if photo else req.text) or ""
    bodies: list[tuple[int | None, str, Rows | None]] = [(None, plain, rows)]
    if ab is not None and ab.variants:
        bodies = [(number, v.body, v.buttons or rows) for number, v in enumerate(ab.variants, start=1)]
    async with conn.transaction():
        code = debug_code.make(await broadcasts.next_id(conn), 1)
        found = []
        for number, body, keyboard in bodies:
            text, caption = (None, body) if photo else (body, None)
            refused = debug_code.refusal(text, req.photo_url, caption, req.parse_mode, code)
            if refused is not None:
                raise ValidationError(
                    refused.field if number is None else f"variants[{number - 1}].{refused.field}", refused.message
                )
            content = {
                "text": text,
                "photo_url": req.photo_url,
                "caption": caption,
                "parse_mode": req.parse_mode,
                "buttons": keyboard,
                "variant": number,
            }
            cur = await conn.execute(SQL_INSERT, {"chat": chat_id, "content": Jsonb(content), "code": code, "by": by})
            row = await cur.fetchone()
            assert row is not None
            test_send_id = int(row[0])
            job_id = await queue.enqueue(conn, JOB_TYPE, {"test_send_id": test_send_id}, max_retries=MAX_RETRIES)
            await conn.execute(SQL_SET_JOB, {"job": job_id, "t": test_send_id})
            sent = await get(conn, test_send_id)
            assert sent is not None
            found.append(sent)
    return found


async def get(conn: AsyncConnection[Any], test_send_id: int) -> TestSend | None:
    cur = await conn.execute(SQL_GET, {"t": test_send_id})
    row = await cur.fetchone()
    return None if row is None else TestSend(*row)


async def finish(
    conn: AsyncConnection[Any], test_send_id: int, status: str, message_id: int | None, error: str | None
) -> None:
    await conn.execute(SQL_FINISH, {"t": test_send_id, "status": status, "message": message_id, "error": error})
