"""Per-group progress of one broadcast: status with a glyph, debug code, message id, error."""

from __future__ import annotations

from typing import Any

from tgms_tui.backend.dashboard import DeliveryRow

from . import format as fmt
from .live_table import Cell, Column, LiveTable

STATUS_ORDER = {"failed": 0, "ambiguous": 1, "sending": 2, "pending": 3, "queued": 4, "sent": 5, "skipped": 6}


class DeliveriesTable(LiveTable[DeliveryRow]):
    PANE_TITLE = "Groups"
    KEY_FIELD = "chat_id"
    FLEX_COLUMN = "error"
    FLEX_MIN = 8
    COLUMNS = (
        Column("group", "Group", 15),
        Column("title", "Title", 24),
        Column("status", "Status", 12),
        Column("code", "Debug code", 12),
        Column("msg", "Msg id", 8),
        Column("tries", "Tries", 5),
        Column("at", "Sent", 9),
        Column("error", "Error", 40),
    )
    DEFAULT_SORT = "status"

    def key_of(self, item: DeliveryRow) -> str:
        return str(item.chat_id)

    def cells(self, d: DeliveryRow) -> tuple[Cell, ...]:
        return (
            str(d.chat_id),
            fmt.text(d.title or "", limit=24),
            fmt.status(d.status),
            d.debug_code or "—",
            str(d.telegram_message_id or "—"),
            str(d.attempts),
            fmt.timestamp(d.sent_at) if d.sent_at else "—",
            fmt.text(d.error or "", "red", limit=200),
        )

    def sort_value(self, d: DeliveryRow, column: str) -> Any:
        return {
            "group": d.chat_id,
            "title": (d.title or "").lower(),
            "status": (STATUS_ORDER.get(d.status, 9), d.chat_id),
            "code": d.debug_code or "",
            "msg": d.telegram_message_id,
            "tries": d.attempts,
            "at": d.sent_at.timestamp() if d.sent_at else None,
            "error": d.error or "",
        }.get(column, d.chat_id)

    def search_text(self, d: DeliveryRow) -> str:
        return f"{d.chat_id} {d.title or ''} {d.status} {d.debug_code or ''} {d.error or ''}".lower()
