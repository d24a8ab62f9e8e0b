"""Each follow-up of a broadcast (edit, retract, pin, unpin) in each group, shown like a delivery:
status with a glyph, debug code, tries, Telegram's reason. Rows are keyed by follow-up and group, so
the cursor stays put while a follow-up's job works through the groups."""

from __future__ import annotations

from typing import Any, NamedTuple

from . import format as fmt
from .deliveries import STATUS_ORDER as DELIVERY_ORDER
from .live_table import Cell, Column, LiveTable

STATUS_ORDER = {**DELIVERY_ORDER, "doing": 2, "done": 5}


class FollowupRow(NamedTuple):
    followup_id: int
    action: str
    chat_id: int
    debug_code: str
    status: str
    error: str | None
    attempts: int


def rows_of(detail: list[dict[str, Any]]) -> list[FollowupRow]:
    """`followups.detail(...)` as table rows, newest follow-up first."""
    return [
        FollowupRow(
            f["followup_id"], f["action"], d["chat_id"], d["debug_code"], d["status"], d["error"], d["attempts"]
        )
        for f in reversed(detail)
        for d in f["deliveries"]
    ]


class FollowupsTable(LiveTable[FollowupRow]):
    PANE_TITLE = "After sending: edit, retract, pin, unpin"
    FLEX_COLUMN = "error"
    FLEX_MIN = 8
    COLUMNS = (
        Column("followup", "#", 5, right=True),
        Column("action", "Action", 8),
        Column("group", "Group", 15),
        Column("status", "Status", 12),
        Column("code", "Debug code", 12),
        Column("tries", "Tries", 5),
        Column("error", "Reason", 40),
    )
    DEFAULT_SORT = "followup"
    DEFAULT_REVERSE = True

    def key_of(self, item: FollowupRow) -> str:
        return f"{item.followup_id}:{item.chat_id}"

    def cells(self, r: FollowupRow) -> tuple[Cell, ...]:
        return (
            str(r.followup_id),
            r.action,
            str(r.chat_id),
            fmt.status(r.status),
            r.debug_code,
            str(r.attempts),
            fmt.text(r.error or "", "red" if r.status == "failed" else "", limit=200),
        )

    def sort_value(self, r: FollowupRow, column: str) -> Any:
        return {
            "followup": (r.followup_id, -STATUS_ORDER.get(r.status, 9), -r.chat_id),
            "action": r.action,
            "group": r.chat_id,
            "status": (STATUS_ORDER.get(r.status, 9), r.chat_id),
            "code": r.debug_code,
            "tries": r.attempts,
            "error": r.error or "",
        }.get(column, r.followup_id)

    def search_text(self, r: FollowupRow) -> str:
        return f"{r.followup_id} {r.action} {r.chat_id} {r.status} {r.debug_code} {r.error or ''}".lower()
