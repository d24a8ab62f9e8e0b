"""Analytics (C on the dashboard): four charts for the fleet or one group over 24 h, 7 d or 30 d.

Member count, join requests decided per bucket by outcome, broadcast copies delivered and failed, and
active members. Live like the other screens (the same RefreshScheduler: a NOTIFY from a table that
feeds a chart marks it stale, throttled; a periodic tick refreshes anyway, slower than the dashboard's
because the buckets are hours or days). Charts are textual-plotext widgets; only numbers and our own
labels reach them, while a group's title (Telegram's text) is shown literally in the header.
Read-only: nothing on this screen writes, so read-only mode shows it whole.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.screen import Screen
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tgms_tui.backend import analytics
from tgms_tui.backend.analytics import WINDOWS, Series
from tgms_tui.backend.live import ALL_TABLES, RefreshScheduler
from tgms_tui.errors import DatabaseUnavailable
from tgms_tui.messages import DatabaseState
from tgms_tui.widgets import format as fmt
from tgms_tui.widgets.key_bar import KeyBar
from tgms_tui.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp

WATCHED = {"managed_groups", "join_requests", "sent_messages", ALL_TABLES}
MIN_PERIOD = 10.0  # seconds between periodic refreshes at least: buckets are hours or days
CHARTS = ("members", "joins", "deliveries", "active")
WINDOW_ORDER = tuple(WINDOWS)


def tick_labels(starts: list[datetime], daily: bool, count: int = 5) -> tuple[list[float], list[str]]:
    """A few evenly spaced x positions with their bucket's date or time (never more than fit)."""
    n = len(starts)
    if n == 0:
        return [], []
    step = max(1, (n - 1) // max(1, count - 1))
    positions: list[float] = list(range(0, n, step))
    if positions[-1] != n - 1:
        positions[-1] = n - 1
    fmt_str = "%m-%d" if daily else "%d %H:%M"
    return positions, [starts[int(i)].strftime(fmt_str) for i in positions]


def bar_top(*stacks: list[int]) -> float:
    """The y axis' top for stacked bars: the tallest stack, never 0 (plotext centres an empty chart
    on zero, showing negative counts)."""
    return float(max([sum(column) for column in zip(*stacks, strict=True)] + [1]))


class AnalyticsScreen(Screen[None]):
    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "back", "Back"),
        Binding("w", "next_window", "Window"),
        Binding("1", "set_window('24h')", "24h", show=False),
        Binding("2", "set_window('7d')", "7d", show=False),
        Binding("3", "set_window('30d')", "30d", show=False),
        Binding("g", "toggle_scope", "Fleet/group"),
        Binding("ctrl+r", "refresh_now", "Refresh", show=False),
    ]

    def __init__(self, group_id: int | None = None, *, window: str = "7d", fleet_first: bool = True) -> None:
        """`group_id`: the group `g` switches to (the dashboard's cursor group); the fleet first unless
        `fleet_first` is False."""
        super().__init__()
        self.group_id = group_id
        self.showing_group = group_id is not None and not fleet_first
        self.window = WINDOWS[window]
        self.series: Series | None = None
        self.title_of_group: tuple[str, bool] | None = None
        self.scheduler: RefreshScheduler | None = None

    @property
    def tgms(self) -> TGMSApp:
        return cast("TGMSApp", self.app)

    @property
    def scope(self) -> int | None:
        return self.group_id if self.showing_group else None

    def compose(self) -> ComposeResult:
        yield StatusBar(read_only=self.tgms.read_only, id="status")
        yield Static("Analytics: loading…", id="analytics-head")
        with Grid(id="charts"):
            for name in CHARTS:
                yield PlotextPlot(id=f"chart-{name}")
        yield KeyBar()

    def on_mount(self) -> None:
        app = self.tgms
        self.scheduler = RefreshScheduler(
            self._refresh, {"charts"}, min_gap=max(app.min_refresh_gap, 0.5), period=max(app.refresh_period, MIN_PERIOD)
        )
        app.db_changed.subscribe(self, self._on_change)
        app.db_state_signal.subscribe(self, self._on_db_state)
        self.query_one(StatusBar).set_db(app.db_state)
        self.run_worker(self.scheduler.run(), name="analytics-refresh", group="refresh", exit_on_error=False)

    def _on_change(self, table: str) -> None:
        if table in WATCHED and self.scheduler is not None:
            self.scheduler.mark("charts")

    def _on_db_state(self, state: DatabaseState) -> None:
        self.query_one(StatusBar).set_db(state)

    async def _refresh(self, stale: frozenset[str]) -> bool:
        scope, win = self.scope, self.window

        async def load(conn: Any) -> tuple[Series, tuple[str, bool] | None]:
            title = await analytics.group_title(conn, scope) if scope is not None else None
            return await analytics.series_for(conn, win, scope), title

        try:
            series, title = await self.tgms.run_db(load)
        except DatabaseUnavailable:
            return False
        if not self.is_attached or scope != self.scope or win is not self.window:
            if self.scheduler is not None and self.is_attached:
                self.scheduler.mark("charts")  # switched while reading: read the new choice
            return True
        self.series, self.title_of_group = series, title
        self._show(series, title)
        return True

    # ---------------------------------------------------------------- drawing
    def header(self, series: Series, title: tuple[str, bool] | None) -> Text:
        head = Text()
        if series.group_id is None:
            head.append("Fleet", style="bold")
            head.append(" (active groups)")
        else:
            # Telegram's title: literal, made safe (no markup, no control or bidi characters)
            head.append(fmt.plain(title[0] if title else "(not managed)", 80) or "(no title)", style="bold")
            head.append(f"  id {series.group_id}")
            if title is not None and not title[1]:
                head.append("  INACTIVE", style="bold red")
        head.append(f" · last {series.window.name}, per {series.window.bucket_label} (UTC)")
        t = series.totals()
        head.append(
            f" · members {fmt.count(t['members'])} · joins {fmt.count(t['joins_approved'])} approved, "
            f"{fmt.count(t['joins_declined'])} declined, {fmt.count(t['joins_other'])} other · deliveries "
            f"{fmt.count(t['deliveries_sent'])}, {fmt.count(t['deliveries_failed'])} failed · active "
            f"{fmt.count(t['active_members'])}"
        )
        others = " ".join(f"[{w}]" if w == series.window.name else w for w in WINDOW_ORDER)
        head.append(f"\nwindow: {others}  (w / 1 2 3)   ")
        if self.group_id is not None:
            head.append("g: " + ("back to the fleet" if self.showing_group else f"group {self.group_id}"))
        return head

    def _show(self, series: Series, title: tuple[str, bool] | None) -> None:
        self.query_one("#analytics-head", Static).update(self.header(series, title))
        x = list(range(len(series.starts)))
        ticks, labels = tick_labels(series.starts, daily=series.window.bucket.days >= 1)
        bucket = series.window.bucket_label

        def prepare(name: str, title_text: str) -> Any:
            widget = self.query_one(f"#chart-{name}", PlotextPlot)
            plt = widget.plt
            plt.clear_data()
            plt.clear_figure()
            plt.title(title_text)
            return widget, plt

        def draw(widget: PlotextPlot) -> None:
            widget.plt.xticks(ticks, labels)  # after the data: a bar chart sets its own ticks
            widget.refresh()

        widget, plt = prepare("members", "Member count")
        points = [(i, m) for i, m in zip(x, series.members, strict=True) if m is not None]
        if points:
            plt.plot([p[0] for p in points], [p[1] for p in points], marker="braille", color="cyan")
        draw(widget)

        widget, plt = prepare("joins", f"Join requests per {bucket}")
        plt.stacked_bar(
            x,
            [series.joins_approved, series.joins_declined, series.joins_other],
            labels=["approved", "declined", "other"],
            color=["green", "red", "gray"],
        )
        plt.ylim(0, bar_top(series.joins_approved, series.joins_declined, series.joins_other))
        draw(widget)

        widget, plt = prepare("deliveries", f"Broadcast deliveries per {bucket}")
        plt.stacked_bar(
            x, [series.deliveries_sent, series.deliveries_failed], labels=["sent", "failed"], color=["blue", "red"]
        )
        plt.ylim(0, bar_top(series.deliveries_sent, series.deliveries_failed))
        draw(widget)

        widget, plt = prepare("active", "Active members (seen in 24 h)")
        points = [(i, a) for i, a in zip(x, series.active_members, strict=True) if a is not None]
        if points:
            plt.plot([p[0] for p in points], [p[1] for p in points], marker="braille", color="magenta")
        draw(widget)

    # ---------------------------------------------------------------- keys
    def _reload(self) -> None:
        if self.scheduler is not None:
            self.scheduler.mark("charts")

    def action_back(self) -> None:
        self.dismiss(None)

    def action_next_window(self) -> None:
        i = WINDOW_ORDER.index(self.window.name)
        self.action_set_window(WINDOW_ORDER[(i + 1) % len(WINDOW_ORDER)])

    def action_set_window(self, name: str) -> None:
        self.window = WINDOWS[name]
        self._reload()

    def action_toggle_scope(self) -> None:
        if self.group_id is None:
            self.notify("No group chosen: open the charts from a row of the groups pane", severity="warning")
            return
        self.showing_group = not self.showing_group
        self._reload()

    def action_refresh_now(self) -> None:
        self._reload()
