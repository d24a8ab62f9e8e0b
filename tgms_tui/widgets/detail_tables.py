"""Small live tables of the group detail screen: its join requests, broadcasts and kicks."""

from __future__ import annotations

from typing import Any

from tgms_tui.backend.group_actions import GroupJoinRequest, KickRecord, ReceivedBroadcast

from . import format as fmt
from .live_table import Cell, Column, LiveTable


class GroupJoinsTable(LiveTable[GroupJoinRequest]):
    PANE_TITLE = "Join requests"
    FOLLOW = True
    FLEX_COLUMN = "outcome"
    COLUMNS = (
        Column("at", "Requested", 11),
        Column("user", "User", 14),
        Column("outcome", "Outcome", 30),
    )
    DEFAULT_SORT = "at"
    DEFAULT_REVERSE = True

    def key_of(self, item: GroupJoinRequest) -> str:
        return str(item.request_id)

    def cells(self, r: GroupJoinRequest) -> tuple[Cell, ...]:
        outcome = fmt.status(r.status)
        if r.error:
            outcome.append(f" {fmt.plain(r.error, 200)}", style="dim")
        return (
            fmt.timestamp(r.requested_at),
            fmt.text(f"@{r.username}" if r.username else r.user_id, limit=14),
            outcome,
        )

    def sort_value(self, r: GroupJoinRequest, column: str) -> Any:
        return {"at": r.requested_at.timestamp(), "user": (r.username or "").lower(), "outcome": r.status}.get(
            column, r.request_id
        )

    def search_text(self, r: GroupJoinRequest) -> str:
        return f"{r.user_id} {r.username or ''} {r.status} {r.error or ''}".lower()


class GroupBroadcastsTable(LiveTable[ReceivedBroadcast]):
    PANE_TITLE = "Broadcasts received"
    FOLLOW = True
    FLEX_COLUMN = "text"
    FLEX_MIN = 6
    COLUMNS = (
        Column("code", "Debug code", 12),
        Column("status", "Status", 10),
        Column("at", "Sent", 11),
        Column("text", "Message / error", 40),
    )
    DEFAULT_SORT = "at"
    DEFAULT_REVERSE = True

    def key_of(self, item: ReceivedBroadcast) -> str:
        return item.debug_code

    def cells(self, b: ReceivedBroadcast) -> tuple[Cell, ...]:
        detail = fmt.text(b.summary, limit=60)
        if b.error:
            detail = fmt.text(f"{fmt.plain(b.error, 200)} — ", "red") + detail
        return (
            b.debug_code,
            fmt.status(b.status),
            fmt.timestamp(b.sent_at),
            detail,
        )

    def sort_value(self, b: ReceivedBroadcast, column: str) -> Any:
        at = (b.sent_at or b.created_at).timestamp()
        return {"at": at, "code": b.debug_code, "status": b.status}.get(column, at)

    def search_text(self, b: ReceivedBroadcast) -> str:
        return f"{b.debug_code} {b.broadcast_id} {b.status} {b.summary} {b.error or ''}".lower()


class KicksTable(LiveTable[KickRecord]):
    PANE_TITLE = "Kick audit"
    FOLLOW = True
    FLEX_COLUMN = "reason"
    COLUMNS = (
        Column("at", "At", 11),
        Column("user", "User", 14),
        Column("action", "Action", 20),
        Column("reason", "Reason", 30),
    )
    DEFAULT_SORT = "at"
    DEFAULT_REVERSE = True

    def key_of(self, item: KickRecord) -> str:
        return str(item.kick_id)

    def cells(self, k: KickRecord) -> tuple[Cell, ...]:
        action = fmt.text(k.action + (" (dry run)" if k.dry_run else ""), "red" if k.action == "failed" else "")
        return (fmt.timestamp(k.at), str(k.user_id), action, fmt.text(k.reason or "", limit=200))

    def sort_value(self, k: KickRecord, column: str) -> Any:
        return {"at": k.at.timestamp(), "user": k.user_id, "action": k.action}.get(column, k.kick_id)

    def search_text(self, k: KickRecord) -> str:
        return f"{k.user_id} {k.action} {k.reason or ''}".lower()
