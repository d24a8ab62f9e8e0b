"""The dashboard: four live panes, refreshed on NOTIFY (throttled) with a periodic fallback.

The screen owns one `RefreshScheduler`. Change notices from the app's LISTEN connection mark panes
stale; the scheduler coalesces them and calls `_refresh`, which loads only the stale panes in one
transaction and hands the rows to the tables (which update them in place). Database failures make
`_refresh` return False: the status bar says so and the scheduler retries; nothing is raised.

Above the panes, the raid banner (widgets/raid_banner.py) appears while the fleet or a group is on
raid hold; it is read on every tick and on changes to groups, join requests and the join gate.

Groups are the big pane (10,000 rows): a NOTIFY on 'tgms_groups' names the changed ids and only those
rows are read ("group_rows"). All groups are read at start, after a reconnect, when a statement
changed too many to name, every FULL_GROUPS_EVERY periodic ticks as a safety net, and on every tick
while change notifications are not arriving. Jobs, workers and join requests (bounded, and showing
ages) are read on every 2 s tick.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, cast

from psycopg import AsyncConnection
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.events import ScreenResume, ScreenSuspend
from textual.screen import Screen
from textual.widgets import Input

from tgms_tui.backend import broadcasts, queue
from tgms_tui.backend import dashboard as data
from tgms_tui.backend.live import ALL_TABLES, RefreshScheduler
from tgms_tui.errors import DatabaseUnavailable
from tgms_tui.messages import DatabaseState, PaneAction, RefreshStats
from tgms_tui.widgets.broadcasts import BroadcastJobsTable
from tgms_tui.widgets.key_bar import KeyBar
from tgms_tui.widgets.live_table import LiveTable
from tgms_tui.widgets.panes import GroupsTable, JoinRequestsTable, PoolStatsView, WorkersTable
from tgms_tui.widgets.raid_banner import RaidBanner
from tgms_tui.widgets.status_bar import StatusBar

from . import group_ops
from .actions import is_allowed
from .analytics import AnalyticsScreen
from .bans import BansScreen
from .broadcasts import BroadcastsScreen
from .composer import ComposerScreen
from .confirm import ConfirmScreen
from .group_detail import GroupDetailScreen
from .hooks import HooksScreen
from .job_detail import JobDetailScreen
from .join_queue import JoinQueueScreen
from .links import LinksScreen

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp

PANES = ("groups", "jobs", "workers", "joins")
TICK_PANES = ("jobs", "workers", "joins", "raid")
# Everything the scheduler refreshes: the panes and the raid banner.
REFRESHED = (*PANES, "raid")
FULL_GROUPS_EVERY = 15  # periodic ticks: 30 s at the default 2 s

# Which panes a NOTIFY from each table makes stale (groups come by id on their own channel).
TABLE_PANES: dict[str, tuple[str, ...]] = {
    "managed_groups": ("joins", "raid"),
    "jobs": ("jobs",),
    "broadcasts": ("jobs",),  # a sender job shows its broadcast's outcome
    "bot_health": ("workers",),
    "join_requests": ("joins", "raid"),
    "join_gate": ("raid",),
}


async def load_panes(
    conn: AsyncConnection[Any],
    stale: frozenset[str],
    group_ids: frozenset[int] = frozenset(),
    searches: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Everything the stale panes show, read in one transaction (one consistent picture). `searches`:
    the filter of each pane that filters in the database (jobs, joins)."""
    searches = searches or {}
    loaded: dict[str, Any] = {"searches": searches}
    if "groups" in stale:
        loaded["groups"] = await data.fetch_groups(conn)
    elif "group_rows" in stale and group_ids:
        loaded["group_rows"] = await data.fetch_groups_by_id(conn, group_ids)
    if "jobs" in stale:
        loaded["pool_stats"] = await data.fetch_pool_stats(conn)
        loaded["jobs"] = await data.fetch_recent_jobs(conn, search=searches.get("jobs", ""))
        senders = [j.job_id for j in loaded["jobs"] if j.job_type == broadcasts.SEND_JOB_TYPE]
        loaded["job_broadcasts"] = await broadcasts.for_jobs(conn, senders)
    if "workers" in stale:
        loaded["workers"] = await data.fetch_workers(conn)
    if "joins" in stale:
        loaded["joins"] = await data.fetch_join_requests(conn, search=searches.get("joins", ""))
    if "raid" in stale:
        loaded["raid"] = await data.fetch_raid_holds(conn)
    return loaded


class DashboardScreen(Screen[None]):
    """Groups, job queue, worker health and join requests, live."""

    BINDINGS: ClassVar[list[Any]] = [
        Binding("b", "compose", "Broadcast"),
        Binding("K", "bans", "Bans"),
        Binding("L", "links", "Links"),
        Binding("B", "broadcasts", "Broadcasts"),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("p", "toggle_pause", "Pause"),
        Binding("ctrl+r", "refresh_now", "Refresh", show=False),
        Binding("1", "focus_pane('groups')", "Groups", show=False),
        Binding("2", "focus_pane('jobs')", "Jobs", show=False),
        Binding("3", "focus_pane('workers')", "Workers", show=False),
        Binding("4", "focus_pane('joins')", "Joins", show=False),
        Binding("Q", "join_queue", "Join queue"),
        Binding("C", "analytics", "Charts"),
        Binding("W", "hooks", "Webhooks"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.paused = False
        self.last_refresh: RefreshStats | None = None
        self._filter_target: LiveTable[Any] | None = None
        self.scheduler: RefreshScheduler | None = None
        self._changed_groups: set[int] = set()  # named by 'tgms_groups' NOTIFYs, not read yet

    @property
    def tgms(self) -> TGMSApp:
        return cast("TGMSApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(read_only=self.tgms.read_only, id="status")
        yield RaidBanner(id="raid-banner")
        with Vertical(id="panes"):
            yield GroupsTable(id="groups")
            with Vertical(id="jobs-box"):
                yield PoolStatsView(id="pool-stats")
                yield BroadcastJobsTable(id="jobs")
            with Horizontal(id="bottom"):
                yield WorkersTable(id="workers")
                yield JoinRequestsTable(id="joins")
        yield Input(placeholder="filter the focused pane (enter: keep, escape: clear)", id="filter")
        yield KeyBar()

    def on_mount(self) -> None:
        app = self.tgms
        self.scheduler = RefreshScheduler(
            self._refresh, REFRESHED, min_gap=app.min_refresh_gap, period=app.refresh_period, periodic=self._tick_panes
        )
        app.db_changed.subscribe(self, self._on_db_change)
        app.group_changes.subscribe(self, self._on_group_change)
        app.db_state_signal.subscribe(self, self._on_db_state)
        self.query_one(StatusBar).set_db(app.db_state)
        self.run_worker(self.scheduler.run(), name="dashboard-refresh", group="refresh", exit_on_error=False)
        self.query_one(GroupsTable).focus()

    # ---------------------------------------------------------------- panes
    def pane_for(self, name: str) -> LiveTable[Any]:
        if name == "pane":
            focused = self.focused
            return focused if isinstance(focused, LiveTable) else self.query_one(GroupsTable)
        return cast("LiveTable[Any]", self.query_one(f"#{name}"))

    @property
    def groups(self) -> GroupsTable:
        return self.query_one(GroupsTable)

    # ---------------------------------------------------------------- live data
    def _on_db_change(self, table: str) -> None:
        if self.scheduler is None:
            return
        if table == ALL_TABLES:
            self.scheduler.mark_all()
        else:
            self.scheduler.mark(*TABLE_PANES.get(table, ()))

    def _on_group_change(self, payload: str) -> None:
        if self.scheduler is None:
            return
        kind, _, ids = payload.partition(":")
        if kind in ("u", "d") and ids:
            try:
                self._changed_groups.update(int(i) for i in ids.split(","))
            except ValueError:
                self.scheduler.mark("groups")
                return
            self.scheduler.mark("group_rows")
        else:
            self.scheduler.mark("groups")

    def _tick_panes(self, tick: int) -> tuple[str, ...]:
        if not self.tgms.listening or tick % FULL_GROUPS_EVERY == 0:
            return REFRESHED
        return TICK_PANES

    def _on_db_state(self, state: DatabaseState) -> None:
        self.query_one(StatusBar).set_db(state)

    async def _refresh(self, stale: frozenset[str]) -> bool:
        started = time.perf_counter()
        ids: frozenset[int] = frozenset()
        if "groups" in stale or "group_rows" in stale:
            ids, self._changed_groups = frozenset(self._changed_groups), set()
        searches = self._searches()
        try:
            loaded = await self.tgms.run_db(lambda conn: load_panes(conn, stale, ids, searches))
        except DatabaseUnavailable:
            self._changed_groups.update(ids)
            return False
        if not self.is_attached:
            return True
        with self.app.batch_update():
            if "groups" in loaded:
                self.groups.show(loaded["groups"])
            elif "group_rows" in loaded:
                found = loaded["group_rows"]
                gone = {str(i) for i in ids} - {str(g.group_id) for g in found}
                self.groups.apply_changes(found, gone)
            if "jobs" in loaded:
                self.query_one(PoolStatsView).show(loaded["pool_stats"])
                self.query_one(BroadcastJobsTable).set_outcomes(loaded["job_broadcasts"])
                self._show_searched("jobs", loaded)
            if "workers" in loaded:
                self.query_one(WorkersTable).show(loaded["workers"])
            if "joins" in loaded:
                self._show_searched("joins", loaded)
            if "raid" in loaded:
                self.query_one(RaidBanner).show(loaded["raid"])
        self.last_refresh = RefreshStats(time.time(), (time.perf_counter() - started) * 1000, stale)
        self.query_one(StatusBar).set_refresh(self.last_refresh)
        return True

    def _searches(self) -> dict[str, str]:
        """The filters the database applies: one per pane whose table filters there."""
        return {name: self.pane_for(name).filter_text for name in ("jobs", "joins")}

    def _show_searched(self, pane: str, loaded: dict[str, Any]) -> None:
        table = self.pane_for(pane)
        if loaded["searches"].get(pane, "") != table.filter_text:
            self._mark(pane)  # the filter changed while these rows were read: read them again
            return
        table.show(loaded[pane])

    def _set_filter(self, table: LiveTable[Any], text: str) -> None:
        table.set_filter(text)
        if table.SERVER_FILTER:
            self._mark(next(name for name in PANES if self.pane_for(name) is table))

    # Hidden behind another screen: keep marking, stop refreshing (Dolphie does the same).
    def on_screen_suspend(self, event: ScreenSuspend) -> None:
        if self.scheduler is not None:
            self.scheduler.hold(True)

    def on_screen_resume(self, event: ScreenResume) -> None:
        if self.scheduler is not None:
            self.scheduler.mark_all()
            self.scheduler.hold(self.paused)

    # ---------------------------------------------------------------- dashboard actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return is_allowed(self.app, action)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if self.scheduler is not None:
            self.scheduler.hold(self.paused)
        self.query_one(StatusBar).set_paused(self.paused)

    def action_refresh_now(self) -> None:
        if self.scheduler is not None:
            self.scheduler.mark_all()

    def action_focus_pane(self, name: str) -> None:
        self.pane_for(name).focus()

    def action_filter(self) -> None:
        focused = self.focused
        self._filter_target = focused if isinstance(focused, LiveTable) else self.groups
        box = self.query_one("#filter", Input)
        box.value = self._filter_target.filter_text
        box.placeholder = f"filter {self._filter_target.PANE_TITLE.lower()} (enter: keep, escape: clear)"
        box.add_class("-shown")
        box.focus()

    def action_clear_filter(self) -> None:
        focused = self.focused
        if isinstance(focused, LiveTable) and focused.filter_text:
            self._set_filter(focused, "")

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self._filter_target is not None:
            self._set_filter(self._filter_target, event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._close_filter()

    def on_key(self, event: Any) -> None:
        box = self.query_one("#filter", Input)
        if event.key == "escape" and box.has_focus:
            event.stop()
            box.value = ""
            self._close_filter()

    def _close_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("-shown")
        (self._filter_target or self.groups).focus()

    def action_compose(self) -> None:
        if self.tgms.refuse_if_read_only("composing a broadcast"):
            return
        self.app.push_screen(ComposerScreen(marked=self.groups.marked_groups()))

    def action_bans(self) -> None:
        self.app.push_screen(BansScreen())

    def action_links(self) -> None:
        self.app.push_screen(LinksScreen(marked=self.groups.marked_groups()))

    def action_broadcasts(self) -> None:
        self.app.push_screen(BroadcastsScreen())

    def action_analytics(self) -> None:
        """The fleet's charts; `g` there switches to the group under the groups pane's cursor."""
        row = self.groups.cursor_item
        self.app.push_screen(AnalyticsScreen(row.group_id if row is not None else None))

    def action_hooks(self) -> None:
        self.app.push_screen(HooksScreen())

    # ---------------------------------------------------------------- row actions
    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self.run_worker(work, name=name, group="actions", exit_on_error=False)

    @on(PaneAction)
    def _pane_action(self, message: PaneAction) -> None:
        message.stop()
        action, item = message.action, message.item
        if not is_allowed(self.app, action):
            self.tgms.refuse_if_read_only(action.replace("_", " "))
            return
        handlers: dict[str, Callable[[Any], Coroutine[Any, Any, None]]] = {
            "group_detail": self._group_detail,
            "toggle_active": self._toggle_active,
            "set_phase": self._set_phase,
            "set_join_policy": self._set_join_policy,
            "toggle_final": self._toggle_final,
            "release_hold": self._release_hold,
            "refresh_members": self._refresh_members,
            "add_group": self._add_group,
            "job_detail": self._job_detail,
            "retry_job": self._retry_job,
            "cancel_job": self._cancel_job,
        }
        handler = handlers.get(action)
        if handler is not None:
            self._spawn(handler(item), action)

    async def _group_detail(self, g: data.GroupRow) -> None:
        await self.app.push_screen(GroupDetailScreen(g.group_id))

    async def _toggle_active(self, g: data.GroupRow) -> None:
        if await group_ops.toggle_active(self.tgms, g):
            self._group_changed(g)

    def action_join_queue(self) -> None:
        self.app.push_screen(JoinQueueScreen())

    async def _set_join_policy(self, g: data.GroupRow) -> None:
        if await group_ops.set_join_policy(self.tgms, g):
            self._group_changed(g)

    async def _set_phase(self, g: data.GroupRow) -> None:
        if await group_ops.set_phase(self.tgms, g):
            self._group_changed(g)

    async def _release_hold(self, g: data.GroupRow) -> None:
        if await group_ops.release_hold(self.tgms, g):
            self._group_changed(g)
            self._mark("raid")

    async def _toggle_final(self, g: data.GroupRow) -> None:
        if await group_ops.toggle_final(self.tgms, g):
            self._group_changed(g)

    def _group_changed(self, g: data.GroupRow) -> None:
        # The NOTIFY will say so too; this shows our own change even if notifications are down.
        self._changed_groups.add(g.group_id)
        self._mark("group_rows")

    async def _refresh_members(self, g: data.GroupRow) -> None:
        await group_ops.refresh_members(self.tgms, g)

    async def _add_group(self, _item: None) -> None:
        await group_ops.add_group(self.tgms)

    async def _job_detail(self, j: data.JobRow) -> None:
        await self.app.push_screen(JobDetailScreen(j.job_id))

    async def _retry_job(self, j: data.JobRow) -> None:
        if j.status not in ("failed", "cancelled"):
            self.notify(
                f"Job {j.job_id} is {j.status}: only failed or cancelled jobs can be retried.",
                severity="warning",
                timeout=4,
            )
            return
        ok = await self.tgms.attempt(lambda conn: queue.retry(conn, j.job_id), "Retrying the job")
        if ok is not None:
            self.notify(
                f"Job {j.job_id} queued again." if ok else f"Job {j.job_id} is no longer failed.",
                severity="information" if ok else "warning",
                timeout=4,
            )
        self._mark("jobs")

    async def _cancel_job(self, j: data.JobRow) -> None:
        if j.status not in ("pending", "running"):
            self.notify(
                f"Job {j.job_id} is {j.status}: only pending or running jobs can be cancelled.",
                severity="warning",
                timeout=4,
            )
            return
        stop = " Its worker stops it at once." if j.status == "running" else ""
        question = f"Cancel job {j.job_id} ({j.job_type})?\n\nIt will not run unless retried.{stop}"
        if not await self.app.push_screen_wait(ConfirmScreen(question, yes="Cancel job", no="Keep")):
            return
        ok = await self.tgms.attempt(lambda conn: queue.cancel(conn, j.job_id), "Cancelling the job")
        if ok is not None:
            self.notify(
                f"Job {j.job_id} cancelled." if ok else f"Job {j.job_id} already finished.",
                severity="information" if ok else "warning",
                timeout=4,
            )
        self._mark("jobs")

    def _mark(self, *panes: str) -> None:
        if self.scheduler is not None:
            self.scheduler.mark(*panes)
