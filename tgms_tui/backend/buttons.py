"""Inline URL buttons under a broadcast's copies (`broadcast_buttons`, one row per broadcast).

`buttons` is what an operator gives: rows of `{"text", "url"}`, as Telegram's `inline_keyboard`. The
admin API, the CLI (`--button "TEXT=URL"`, `--button-row`) and the composer check them with
`validate` before anything is stored; the sender sends them as `reply_markup` with every copy and a
follow-up edit sends them again (an edit without `reply_markup` would remove the keyboard).

Limits: Telegram's clients and servers accept at most 8 buttons in a row and 100 in a keyboard; a
URL button takes http(s) and tg:// links. Telegram publishes no limit for a button's label, and
clients cut long ones, so TGMS takes 1-64 characters.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from .message_validation import URL_LIMIT, ValidationError

FIELD = "buttons"
MAX_PER_ROW = 8
MAX_BUTTONS = 100
MAX_TEXT = 64
SCHEMES = ("http", "https", "tg")

Rows = list[list[dict[str, str]]]

SQL_SET = """
INSERT INTO broadcast_buttons (broadcast_id, rows) VALUES (%(b)s, %(rows)s)
ON CONFLICT (broadcast_id) DO UPDATE SET rows = EXCLUDED.rows
"""
SQL_GET = "SELECT rows FROM broadcast_buttons WHERE broadcast_id = %(b)s"


def validate(value: Any, field: str = FIELD) -> Rows | None:
    """The rows of buttons in their stored form, None for none; ValidationError names `field`
    (`buttons`, or `variants[i].buttons` for an A/B variant's own buttons)."""
    if value is None or value == []:
        return None
    if not isinstance(value, list) or not all(isinstance(row, list) for row in value):
        raise ValidationError(field, 'expected rows of buttons: [[{"text": ..., "url": ...}, ...], ...]')
    rows: Rows = []
    count = 0
    for r, row in enumerate(value, start=1):
        if not row:
            raise ValidationError(field, f"row {r} is empty")
        if len(row) > MAX_PER_ROW:
            raise ValidationError(field, f"row {r} has {len(row)} buttons; at most {MAX_PER_ROW} fit in a row")
        checked = []
        for b, button in enumerate(row, start=1):
            where = f"row {r}, button {b}"
            if not isinstance(button, dict) or set(button) != {"text", "url"}:
                raise ValidationError(field, f'{where}: expected {{"text": ..., "url": ...}}')
            text, url = button["text"], button["url"]
            if not isinstance(text, str) or not isinstance(url, str):
                raise ValidationError(field, f"{where}: text and url must be strings")
            checked.append({"text": check_text(text, where, field), "url": check_url(url, where, field)})
        count += len(checked)
        rows.append(checked)
    if count > MAX_BUTTONS:
        raise ValidationError(field, f"{count} buttons; at most {MAX_BUTTONS} fit under a message")
    return rows


def check_text(text: str, where: str, field: str = FIELD) -> str:
    label = text.strip()
    if not label:
        raise ValidationError(field, f"{where}: the text is empty")
    if len(label) > MAX_TEXT:
        raise ValidationError(field, f"{where}: the text is {len(label)} characters; at most {MAX_TEXT}")
    if any(ch in label for ch in "\n\r\x00"):
        raise ValidationError(field, f"{where}: the text must be one line")
    return label


def check_url(url: str, where: str, field: str = FIELD) -> str:
    link = url.strip()
    if not link or len(link) > URL_LIMIT or any(ch.isspace() for ch in link):
        raise ValidationError(field, f"{where}: the url must be 1-{URL_LIMIT} characters without spaces")
    try:
        parts = urlsplit(link)
    except ValueError:
        raise ValidationError(field, f"{where}: {link[:60]!r} is not a URL") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValidationError(field, f"{where}: only http://, https:// and tg:// links, not {link[:60]!r}")
    if scheme in ("http", "https") and not parts.hostname:
        raise ValidationError(field, f"{where}: {link[:60]!r} has no host")
    if scheme == "tg" and not (parts.netloc or parts.path):
        raise ValidationError(field, f"{where}: {link[:60]!r} names nothing")
    return link


def parse_option(value: str) -> dict[str, str]:
    """One `--button "TEXT=URL"` of the command line; the URL is after the last `=` before `://`."""
    at = value.find("://")
    split = value.rfind("=", 0, at if at >= 0 else len(value))
    if split <= 0:
        raise ValidationError(
            FIELD, f'expected TEXT=URL, got {value[:60]!r} (e.g. --button "Shop=https://example.org")'
        )
    return {"text": value[:split], "url": value[split + 1 :]}


def reply_markup(rows: Rows | None) -> dict[str, Any] | None:
    """The `reply_markup` Telegram takes for these rows (None: no keyboard)."""
    return {"inline_keyboard": rows} if rows else None


def preview(rows: Rows | None) -> str:
    """One line per row, `[ Shop ] [ Docs ]`, for the composer and `tgms broadcast show`."""
    return "\n".join(" ".join(f"[ {b['text']} ]" for b in row) for row in rows or [])


async def attach(conn: AsyncConnection[Any], broadcast_id: int, rows: Rows | None) -> None:
    """Store a new broadcast's buttons in the caller's transaction (nothing for none)."""
    if rows:
        await conn.execute(SQL_SET, {"b": broadcast_id, "rows": Jsonb(rows)})


async def of(conn: AsyncConnection[Any], broadcast_id: int) -> Rows | None:
    cur = await conn.execute(SQL_GET, {"b": broadcast_id})
    row = await cur.fetchone()
    return row[0] if row else None
