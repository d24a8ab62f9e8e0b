"""The dashboard's live panes: groups, jobs (with per-pool counts), workers and join requests.

Each pane is a `LiveTable` that knows how its typed rows (tgms_tui.backend.dashboard) render, sort
and filter. Pane-specific keys are bound here so that the footer shows them when the pane has focus;
the actions themselves are carried out by the dashboard screen, which owns the database work.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Static

from tgms_tui.backend.dashboard import FAILED_COUNT_CAP, GroupRow, JobRow, JoinRequestRow, PoolStats, WorkerRow
from tgms_tui.messages import PaneAction

from . import format as fmt
from .live_table import Cell, Column, LiveTable

MARK = "●"


def short_host(host: str | None) -> str:
    """A host name without its domain (`hostname -s`), an address as it is: what tells workers apart."""
    if not host:
        return "?"
    if host.replace(".", "").isdigit() or ":" in host:
        return host
    return host.split(".", 1)[0]


class ActionTable(LiveTable[Any]):
    """A LiveTable whose row actions are forwarded to the screen as `PaneAction` messages."""

    def request(self, action: str) -> None:
        item = self.cursor_item
        if item is None:
            self.app.notify("Nothing selected in this pane.", severity="warning", timeout=3)
            return
        self.post_message(PaneAction(action, item))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Mutating keys disappear from the key bar in --read-only (the screen refuses them as well): the
        # app knows which actions that mode refuses.
        return self.app.check_action(action, parameters)


class GroupsTable(ActionTable):
    """Every managed group; inactive and failing groups carry words and glyphs, not only colour."""

    PANE_TITLE = "Groups"
    KEY_FIELD = "group_id"
    FLEX_COLUMN = "title"
    COLUMNS = (
        Column("id", "ID", 14),
        Column("mark", MARK, 1, sortable=False),
        Column("title", "Title", 20),
        Column("phase", "Phase", 10),
        Column("state", "State", 8),
        Column("members", "Members", 9, right=True),
        Column("trend", "Trend", 7),
        Column("final", "Final", 5),
        Column("last", "Last bcast", 11),
    )
    DEFAULT_SORT = "title"
    # One function call per row and column (sorting 10,000 groups builds 20,000 of these values).
    SORT_KEYS: ClassVar[dict[str, Callable[[Any], Any]]] = {
        "id": attrgetter("group_id"),
        "title": lambda g: g.title.lower(),
        "phase": attrgetter("phase"),
        "state": lambda g: (g.is_active, not g.held, -g.consecutive_failures),
        "members": attrgetter("member_count"),
        "trend": lambda g: g.member_trend,
        "final": attrgetter("final_message_allowed"),
        "last": attrgetter("last_broadcast_epoch"),
    }

    BINDINGS: ClassVar[list[Any]] = [
        Binding("enter", "detail", "Detail"),
        Binding("space", "mark", "Mark", key_display="␣"),
        Binding("a", "toggle_active", "Active"),
        Binding("P", "set_phase", "Phase"),
        Binding("J", "set_join_policy", "Join policy", show=False),
        Binding("H", "release_hold", "Release hold", show=False),
        Binding("f", "toggle_final", "Final"),
        Binding("r", "refresh_members", "Count"),
        Binding("plus", "add_group", "Add", key_display="+"),
        Binding("u", "clear_marks", "Unmark all", show=False),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.marked: set[int] = set()

    def key_of(self, item: GroupRow) -> str:
        return str(item.group_id)

    def cells(self, g: GroupRow) -> tuple[Cell, ...]:
        if not g.is_active:
            state = Text("✗ OFF", style="bold red")
        elif g.held:
            state = Text("⏸ HELD", style="bold magenta")
        elif g.consecutive_failures:
            state = Text(f"! FAIL×{g.consecutive_failures}", style="bold yellow")
        else:
            state = Text("ok", style="green")
        return (
            str(g.group_id),
            MARK if g.group_id in self.marked else " ",
            fmt.text(g.title, "dim" if not g.is_active else ""),
            g.phase,
            state,
            fmt.count(g.member_count),
            fmt.trend(g.member_trend),
            "yes" if g.final_message_allowed else "no",
            fmt.timestamp(g.last_broadcast_at),
        )

    def search_text(self, g: GroupRow) -> str:
        state = "inactive off" if not g.is_active else ("failing fail" if g.consecutive_failures else "active")
        if g.held:
            state += " held raid"
        return f"{g.group_id} {g.title} {g.phase} {state}".lower()

    def summary(self) -> str:
        inactive = sum(1 for g in self.items.values() if not g.is_active)
        failing = sum(1 for g in self.items.values() if g.is_active and g.consecutive_failures)
        held = sum(1 for g in self.items.values() if g.held)
        parts = []
        if held:
            parts.append(f"{held:,} on raid hold")
        if inactive:
            parts.append(f"{inactive:,} inactive")
        if failing:
            parts.append(f"{failing:,} failing")
        if self.marked:
            parts.append(f"{len(self.marked):,} marked")
        return " · ".join(parts)

    # Row actions go to the screen; marking is local state.
    def action_detail(self) -> None:
        self.request("group_detail")

    def action_toggle_active(self) -> None:
        self.request("toggle_active")

    def action_set_phase(self) -> None:
        self.request("set_phase")

    def action_set_join_policy(self) -> None:
        self.request("set_join_policy")

    def action_toggle_final(self) -> None:
        self.request("toggle_final")

    def action_release_hold(self) -> None:
        self.request("release_hold")

    def action_refresh_members(self) -> None:
        self.request("refresh_members")

    def action_add_group(self) -> None:
        self.post_message(PaneAction("add_group", None))  # needs no row: the pane may be empty

    def action_mark(self) -> None:
        g = self.cursor_item
        if g is None:
            return
        self.marked.symmetric_difference_update({g.group_id})
        self.rerender([str(g.group_id)])
        self.action_cursor_down()

    def action_clear_marks(self) -> None:
        keys = [str(gid) for gid in self.marked]
        self.marked.clear()
        self.rerender(keys)

    def marked_groups(self) -> list[int]:
        """Marked groups that still exist, in id order (what the composer targets)."""
        return sorted(gid for gid in self.marked if str(gid) in self.items)


class JobsTable(ActionTable):
    """A bounded window on the queue: running, next pending, latest failed and latest finished jobs."""

    PANE_TITLE = "Jobs"
    KEY_FIELD = "job_id"
    FOLLOW = True
    SERVER_FILTER = True  # the window holds 40 jobs per status of maybe 100,000
    FLEX_COLUMN = "error"
    COLUMNS = (
        Column("id", "ID", 8, right=True),
        Column("pool", "Pool", 4),
        Column("type", "Type", 26),
        Column("status", "Status", 11),
        Column("retries", "Try", 5),
        Column("age", "Age", 6),
        Column("error", "Last error", 20),
    )
    DEFAULT_SORT = "status"  # failed first, then running, pending, finished; newest first within each

    BINDINGS: ClassVar[list[Any]] = [
        Binding("enter", "job_detail", "Payload"),
        Binding("R", "retry_job", "Retry"),
        Binding("x", "cancel_job", "Cancel"),
    ]

    def key_of(self, item: JobRow) -> str:
        return str(item.job_id)

    def cells(self, j: JobRow) -> tuple[Cell, ...]:
        return (
            str(j.job_id),
            j.pool,
            fmt.text(j.job_type, limit=26),
            fmt.status(j.status),
            # Tries made / tries allowed: the first run and max_retries retries (a job exhausted at
            # max_retries 5 reads 6/6, never 6/5).
            Text(f"{j.tries}/{j.max_tries}", style="bold" if j.retries else ""),
            fmt.age(j.age_seconds),
            self._error(j),
        )

    @staticmethod
    def _error(j: JobRow) -> Text:
        """A failed job's error is its state; any other job's error is history (an earlier try)."""
        if not j.last_error:
            return fmt.text("")
        if j.status == "failed":
            return fmt.text(j.last_error, "red", limit=200)
        return fmt.text(f"previous: {fmt.plain(j.last_error, 200)}", "dim")

    def sort_value(self, j: JobRow, column: str) -> Any:
        order = {"failed": 0, "running": 1, "pending": 2, "done": 3, "cancelled": 4}
        return {
            "id": j.job_id,
            "pool": (j.pool, j.job_id),
            "type": (j.job_type, j.job_id),
            "status": (order.get(j.status, 9), j.age_seconds),
            "retries": (j.tries, j.job_id),
            "age": j.age_seconds,
            "error": j.last_error or "",
        }.get(column, j.job_id)

    def search_text(self, j: JobRow) -> str:
        return f"{j.job_id} {j.pool} {j.job_type} {j.status} {j.last_error or ''}".lower()

    def summary(self) -> str:
        failed = sum(1 for j in self.items.values() if j.status == "failed")
        return f"{failed} failed shown" if failed else ""

    def _update_title(self) -> None:
        super()._update_title()
        box = self.parent
        if isinstance(box, Widget) and box.id == "jobs-box":  # the box draws the border
            box.border_title = Text(self.pane_title)

    def action_job_detail(self) -> None:
        self.request("job_detail")

    def action_retry_job(self) -> None:
        self.request("retry_job")

    def action_cancel_job(self) -> None:
        self.request("cancel_job")


class WorkersTable(ActionTable):
    """One row per worker process; a missed heartbeat reads STALE."""

    PANE_TITLE = "Workers"
    FLEX_COLUMN = "error"
    FLEX_MIN = 4
    COLUMNS = (
        Column("worker", "Worker", 22, min_width=13, clip_middle=True),
        Column("status", "Status", 9),
        Column("beat", "Beat", 5),
        Column("done", "Done", 6, right=True),
        Column("failed", "Fail", 4, right=True),
        Column("error", "Last error", 10),
    )
    DEFAULT_SORT = "worker"

    def key_of(self, item: WorkerRow) -> str:
        return item.worker_id

    def cells(self, w: WorkerRow) -> tuple[Cell, ...]:
        if w.is_stale:
            status = Text("✗ STALE", style="bold red reverse")
        elif w.status == "stopped":
            status = Text("– stopped", style="dim")
        else:
            status = Text(f"● {w.status}", style="green" if w.status in ("running", "polling") else "yellow")
        # Pollers (`tgms poll`, one row per bot they poll: worker_id poller:<bot>:<host>:<pid>) show their bot.
        role = f"poll {w.worker_id.split(':')[1]}" if w.bot_name == "poller" else w.bot_name.replace("_worker", "")
        name = role + (f" {short_host(w.host)}:{w.pid}" if w.pid else "")
        return (
            fmt.text(name, limit=80),
            status,
            fmt.age(w.heartbeat_age_seconds),
            fmt.count(w.jobs_done),
            Text(fmt.count(w.jobs_failed), style="red" if w.jobs_failed else ""),
            fmt.text(w.last_error or "", "dim", limit=120),
        )

    def sort_value(self, w: WorkerRow, column: str) -> Any:
        return {
            "worker": (w.bot_name, w.worker_id),
            "status": (not w.is_stale, w.status),
            "beat": w.heartbeat_age_seconds,
            "done": w.jobs_done,
            "failed": w.jobs_failed,
            "error": w.last_error or "",
        }.get(column, w.worker_id)

    def search_text(self, w: WorkerRow) -> str:
        stale = "stale" if w.is_stale else ""
        return f"{w.worker_id} {w.bot_name} {w.status} {stale} {w.last_error or ''}".lower()

    def summary(self) -> str:
        stale = sum(1 for w in self.items.values() if w.is_stale)
        return f"{stale} STALE" if stale else ""


class JoinRequestsTable(ActionTable):
    """The latest join requests and what happened to each."""

    PANE_TITLE = "Join requests"
    FLEX_COLUMN = "outcome"
    FLEX_MIN = 8
    FOLLOW = True
    SERVER_FILTER = True  # the window holds the latest 100
    COLUMNS = (
        Column("age", "Age", 5),
        Column("group", "Group", 13),
        Column("user", "User", 10),
        Column("outcome", "Outcome", 13),
    )
    DEFAULT_SORT = "age"

    def key_of(self, item: JoinRequestRow) -> str:
        return str(item.request_id)

    def cells(self, r: JoinRequestRow) -> tuple[Cell, ...]:
        user = f"@{r.username}" if r.username else str(r.user_id)
        outcome = fmt.status(r.status)
        if r.error:
            outcome.append(f" {fmt.plain(r.error, 200)}", style="dim")
        return (
            fmt.age(r.age_seconds),
            fmt.text(r.chat_title or r.chat_id, limit=13),
            fmt.text(user, limit=10),
            outcome,
        )

    def sort_value(self, r: JoinRequestRow, column: str) -> Any:
        return {
            "age": (r.age_seconds, -r.request_id),
            "group": (r.chat_title or "").lower(),
            "user": (r.username or "").lower(),
            "outcome": r.status,
        }.get(column, -r.request_id)

    def search_text(self, r: JoinRequestRow) -> str:
        return f"{r.chat_id} {r.chat_title or ''} {r.user_id} {r.username or ''} {r.status} {r.error or ''}".lower()


class PoolStatsView(Static):
    """Counts by pool and status, queue lag and throughput (finished per minute)."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.stats: list[PoolStats] = []

    def show(self, stats: list[PoolStats]) -> None:
        self.stats = stats
        table = Table.grid(padding=(0, 1))
        for _ in range(8):
            table.add_column(justify="right")
        table.columns[0].justify = "left"
        table.add_row(
            *(
                Text(h, style="bold")
                for h in ("pool", "pending", "due", "running", "failed", "done/min", "fail/min", "lag")
            )
        )
        for s in stats:
            lag_style = "bold red" if (s.lag_seconds or 0) > 60 else ""
            table.add_row(
                fmt.text(s.pool),  # a str in a Rich table would be read as markup
                fmt.count(s.pending),
                fmt.count(s.due),
                fmt.count(s.running),
                Text(
                    f"✗ {fmt.capped_count(s.failed, FAILED_COUNT_CAP)}" if s.failed else "0",
                    style="bold red" if s.failed else "",
                ),
                fmt.count(s.done_last_minute),
                Text(fmt.count(s.failed_last_minute), style="red" if s.failed_last_minute else ""),
                Text(fmt.age(s.lag_seconds) if s.lag_seconds is not None else "—", style=lag_style),
            )
        self.update(table, layout=False)  # always a header and two pools: height 3 in the stylesheet
