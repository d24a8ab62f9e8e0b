"""Every broadcast in one table: how it went (the same words as `tgms broadcast list`), its target,
its counts, its times and who sent it (row actions go to the screen as `PaneAction` messages); and
the jobs pane's view of sender jobs, which shows their broadcast's outcome."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding

from tgms_tui.backend.broadcasts import BroadcastSummary, outcome
from tgms_tui.backend.dashboard import JobRow

from . import format as fmt
from .live_table import Cell, Column
from .panes import ActionTable, JobsTable

SEVERITY_STYLES = {"ok": "green", "warn": "bold yellow", "bad": "bold red", "busy": "cyan", "idle": ""}
# Failed and stopped first, then what is under way or waiting, then the rest.
SEVERITY_ORDER = {"bad": 0, "warn": 1, "busy": 2, "idle": 3, "ok": 4}


def outcome_text(b: BroadcastSummary) -> Text:
    """A broadcast's outcome with a glyph and a colour (never `✓` for one that delivered nothing)."""
    label, severity = outcome(b)
    return Text(label, style=SEVERITY_STYLES.get(severity, ""), no_wrap=True, end="")


def describe_target(b: BroadcastSummary) -> str:
    kind = b.target.get("kind")
    if kind == "phase":
        where = f"phase {b.target.get('phase')}"
    elif kind == "groups":
        n = len(b.target.get("group_ids", []))
        where = f"{n} group{'s' if n != 1 else ''}"
    else:
        where = "all active"
    return where + (" +final" if b.is_final else "")


class BroadcastsTable(ActionTable):
    PANE_TITLE = "Broadcasts"
    KEY_FIELD = "broadcast_id"
    FLEX_COLUMN = "text"
    FLEX_MIN = 10
    COLUMNS = (
        Column("id", "ID", 6, right=True),
        Column("status", "Status", 22),
        Column("target", "Target", 16),
        Column("sent", "Sent", 6, right=True),
        Column("failed", "Fail", 5, right=True),
        Column("ambiguous", "Ambig", 5, right=True),
        Column("pending", "Pend", 6, right=True),
        Column("created", "Created", 11),
        Column("scheduled", "Scheduled", 11),
        Column("finished", "Finished", 11),
        Column("by", "By", 14),
        Column("text", "Text", 20),
    )
    DEFAULT_SORT = "id"
    DEFAULT_REVERSE = True

    BINDINGS: ClassVar[list[Any]] = [
        Binding("enter", "open_broadcast", "Progress"),
        Binding("e", "edit_broadcast", "Edit"),
        Binding("x", "cancel_broadcast", "Cancel"),
        Binding("D", "retract_broadcast", "Retract"),
        Binding("P", "pin_broadcast", "Pin"),
        Binding("U", "unpin_broadcast", "Unpin"),
    ]

    def key_of(self, item: BroadcastSummary) -> str:
        return str(item.broadcast_id)

    def cells(self, b: BroadcastSummary) -> tuple[Cell, ...]:
        body = b.body.strip().splitlines()[0] if b.body.strip() else ("[photo]" if b.photo_url else "")
        return (
            str(b.broadcast_id),
            outcome_text(b),
            fmt.text(describe_target(b), limit=16),
            fmt.count(b.sent),
            Text(fmt.count(b.failed), style="bold red" if b.failed else ""),
            Text(fmt.count(b.ambiguous), style="bold yellow" if b.ambiguous else ""),
            fmt.count(b.pending),
            fmt.timestamp(b.created_at),
            fmt.timestamp(b.send_at) if b.send_at else "now",
            fmt.timestamp(b.finished_at) if b.finished_at else "—",
            fmt.text(b.created_by or "", limit=14),
            fmt.text(body, limit=200),
        )

    def sort_value(self, b: BroadcastSummary, column: str) -> Any:
        return {
            "id": b.broadcast_id,
            "status": (SEVERITY_ORDER.get(outcome(b)[1], 9), -b.broadcast_id),
            "target": describe_target(b),
            "sent": b.sent,
            "failed": b.failed,
            "ambiguous": b.ambiguous,
            "pending": b.pending,
            "created": b.created_at.timestamp(),
            "scheduled": b.send_at.timestamp() if b.send_at else None,
            "finished": b.finished_at.timestamp() if b.finished_at else None,
            "by": b.created_by or "",
            "text": b.body.lower(),
        }.get(column, b.broadcast_id)

    def search_text(self, b: BroadcastSummary) -> str:
        return f"{b.broadcast_id} {outcome(b)[0]} {b.status} {b.created_by or ''} {b.body} {b.error or ''}".lower()

    def summary(self) -> str:
        scheduled = sum(1 for b in self.items.values() if b.status == "pending")
        troubled = sum(1 for b in self.items.values() if outcome(b)[1] in ("bad", "warn"))
        parts = [f"{scheduled} waiting" if scheduled else "", f"{troubled} with problems" if troubled else ""]
        return " · ".join(p for p in parts if p)

    def action_open_broadcast(self) -> None:
        self.request("open_broadcast")

    def action_edit_broadcast(self) -> None:
        self.request("edit_broadcast")

    def action_cancel_broadcast(self) -> None:
        self.request("cancel_broadcast")

    def action_retract_broadcast(self) -> None:
        self.request("retract_broadcast")

    def action_pin_broadcast(self) -> None:
        self.request("pin_broadcast")

    def action_unpin_broadcast(self) -> None:
        self.request("unpin_broadcast")


class BroadcastJobsTable(JobsTable):
    """The dashboard's jobs pane, where a finished sender job shows how its broadcast went: a job is
    `done` when its sender returned, which says nothing about the groups (`✗ stopped`, `⚠ 3 failed`,
    `✗ sent none`, `✓ 25 sent`)."""

    _STATUS = [c.key for c in JobsTable.COLUMNS].index("status")

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.outcomes: dict[int, BroadcastSummary] = {}

    def set_outcomes(self, outcomes: dict[int, BroadcastSummary]) -> None:
        """The broadcast behind each shown sender job; rows whose broadcast changed are drawn again."""
        changed = [str(job_id) for job_id in outcomes.keys() | self.outcomes.keys()
                   if outcomes.get(job_id) != self.outcomes.get(job_id)]  # fmt: skip
        self.outcomes = outcomes
        if changed:
            self.rerender([key for key in changed if key in self.items])

    def cells(self, j: JobRow) -> tuple[Cell, ...]:
        cells = super().cells(j)
        b = self.outcomes.get(j.job_id)
        if b is None or j.status != "done":
            return cells
        return (*cells[: self._STATUS], outcome_text(b), *cells[self._STATUS + 1 :])

    def search_text(self, j: JobRow) -> str:
        b = self.outcomes.get(j.job_id)
        extra = f" broadcast {b.broadcast_id} {outcome(b)[0]}".lower() if b is not None else ""
        return super().search_text(j) + extra
