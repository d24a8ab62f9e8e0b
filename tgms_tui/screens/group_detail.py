"""One group in depth: facts, member-count sparkline, join requests, broadcasts received, kicks.

Live like the dashboard (same scheduler, its own stale set) and with the same group keys.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Sparkline, Static

from tgms_tui.backend.group_actions import GroupDetail, GroupNotFound, fetch_group_detail
from tgms_tui.backend.live import ALL_TABLES, RefreshScheduler
from tgms_tui.errors import DatabaseUnavailable
from tgms_tui.messages import DatabaseState
from tgms_tui.widgets import format as fmt
from tgms_tui.widgets.detail_tables import GroupBroadcastsTable, GroupJoinsTable, KicksTable
from tgms_tui.widgets.key_bar import KeyBar
from tgms_tui.widgets.status_bar import StatusBar

from . import group_ops
from .actions import is_allowed
from .analytics import AnalyticsScreen

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp

WATCHED = {"managed_groups", "join_requests", "sent_messages", "broadcasts", "kick_audit", ALL_TABLES}


class GroupDetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "back", "Back"),
        Binding("a", "toggle_active", "Active"),
        Binding("P", "set_phase", "Phase"),
        Binding("f", "toggle_final", "Final"),
        Binding("r", "refresh_members", "Count"),
        Binding("C", "analytics", "Charts"),
        Binding("H", "release_hold", "Release hold", show=False),
    ]

    def __init__(self, group_id: int) -> None:
        super().__init__()
        self.group_id = group_id
        self.detail: GroupDetail | None = None
        self.scheduler: RefreshScheduler | None = None

    @property
    def tgms(self) -> TGMSApp:
        return cast("TGMSApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(read_only=self.tgms.read_only, id="status")
        with Vertical(id="detail"):
            yield Static(f"Group {self.group_id}: loading…", id="facts")
            with Vertical(id="history-box") as box:
                box.border_title = "Member count history"
                yield Sparkline([], id="history")
                yield Static("", id="history-caption")
            with Horizontal(id="detail-tables"):
                yield GroupJoinsTable(id="detail-joins")
                yield GroupBroadcastsTable(id="detail-broadcasts")
            yield KicksTable(id="detail-kicks")
        yield KeyBar()

    def on_mount(self) -> None:
        self.scheduler = RefreshScheduler(
            self._refresh, {"detail"}, min_gap=self.tgms.min_refresh_gap, period=self.tgms.refresh_period
        )
        self.tgms.db_changed.subscribe(self, self._on_change)
        self.tgms.db_state_signal.subscribe(self, self._on_db_state)
        self.query_one(StatusBar).set_db(self.tgms.db_state)
        self.run_worker(self.scheduler.run(), group="refresh", exit_on_error=False)
        self.query_one("#detail-joins").focus()

    def _on_change(self, table: str) -> None:
        if table in WATCHED and self.scheduler is not None:
            self.scheduler.mark("detail")

    def _on_db_state(self, state: DatabaseState) -> None:
        self.query_one(StatusBar).set_db(state)

    async def _refresh(self, stale: frozenset[str]) -> bool:
        try:
            detail = await self.tgms.run_db(lambda conn: fetch_group_detail(conn, self.group_id))
        except DatabaseUnavailable:
            return False
        except GroupNotFound:
            self.query_one("#facts", Static).update(Text(f"Group {self.group_id} no longer exists."))
            return True
        if self.is_attached:
            self._show(detail)
        return True

    def _show(self, d: GroupDetail) -> None:
        self.detail = d
        g = d.group
        facts = Text(no_wrap=False)
        # Title, type, phase and reason come from Telegram or the database: literal, made safe.
        facts.append(fmt.plain(g.title or "(no title)", 200), style="bold")
        facts.append(f"  id {g.group_id} · {fmt.plain(d.chat_type, 20)} · phase {fmt.plain(g.phase, 20)} · ")
        if g.is_active:
            facts.append("active", style="green")
        else:
            facts.append(
                f"✗ INACTIVE ({fmt.plain(g.deactivated_reason or 'no reason recorded', 200)}, "
                f"since {fmt.timestamp(d.deactivated_at)})",
                style="bold red",
            )
        facts.append(f" · join policy {fmt.plain(d.join_policy, 20)}")
        if g.held_until is not None:
            since = f" since {fmt.timestamp(d.held_since)}" if d.held_since else ""
            facts.append(
                f" · ⏸ RAID HOLD{since} until {g.held_until:%H:%M:%S} ({d.held_requests:,} held request(s): Q on "
                "the dashboard decides them, H releases the group)",
                style="bold magenta",
            )
        elif d.held_requests:
            facts.append(f" · {d.held_requests:,} held request(s) wait in the queue (Q)", style="magenta")
        facts.append("\n")
        facts.append(f"members {fmt.count(g.member_count)} ")
        facts.append_text(fmt.trend(g.member_trend))
        facts.append(f" (counted {fmt.timestamp(d.member_count_at)}) · consecutive failures ")
        facts.append(str(g.consecutive_failures), style="bold yellow" if g.consecutive_failures else "")
        facts.append(f" · final message {'allowed' if g.final_message_allowed else 'not allowed'}")
        facts.append(f" · last broadcast {fmt.timestamp(g.last_broadcast_at)}")
        facts.append(" · inactive-member kicks " + (f"after {d.inactivity_days} days" if d.inactivity_days else "off"))
        if d.admin_user_id:
            facts.append(f" · admin {d.admin_user_id}")
        self.query_one("#facts", Static).update(facts)
        counts = [float(p.member_count) for p in d.history]
        self.query_one(Sparkline).data = counts
        if counts:
            caption = (
                f"{len(counts)} counts since {fmt.timestamp(d.history[0].recorded_at)}: "
                f"min {min(counts):,.0f} · max {max(counts):,.0f} · now {counts[-1]:,.0f}"
            )
        else:
            caption = "no member counts recorded yet (r counts now)"
        self.query_one("#history-caption", Static).update(Text(caption))
        self.query_one(GroupJoinsTable).show(d.join_requests)
        self.query_one(GroupBroadcastsTable).show(d.broadcasts)
        self.query_one(KicksTable).show(d.kicks)

    # ---------------------------------------------------------------- actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return is_allowed(self.app, action)

    def action_back(self) -> None:
        self.dismiss(None)

    def action_analytics(self) -> None:
        self.app.push_screen(AnalyticsScreen(self.group_id, fleet_first=False))

    def _group_action(self, op: Any) -> None:
        if self.detail is None:
            return
        group = self.detail.group

        async def run() -> None:
            if await op(self.tgms, group) and self.scheduler is not None:
                self.scheduler.mark("detail")

        self.run_worker(run(), group="actions", exit_on_error=False)

    def action_toggle_active(self) -> None:
        self._group_action(group_ops.toggle_active)

    def action_set_phase(self) -> None:
        self._group_action(group_ops.set_phase)

    def action_toggle_final(self) -> None:
        self._group_action(group_ops.toggle_final)

    def action_refresh_members(self) -> None:
        self._group_action(group_ops.refresh_members)

    def action_release_hold(self) -> None:
        self._group_action(group_ops.release_hold)
