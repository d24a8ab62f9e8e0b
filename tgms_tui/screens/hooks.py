"""Event webhooks (W from the dashboard): the subscriptions and their state (active, retrying, paused,
failing), and the selected one's delivery log — status, attempt, response code, latency, error. `r`
replays the selected delivery, `R` every event since a time, `t` sends a test event, `p` pauses or
resumes, like `tgms hooks`.

Secrets are never shown here (only `tgms hooks add` / the API's subscribe answer shows one, once).
URLs and receivers' error texts are shown literally (format.text). Live: reloads when deliveries or
subscriptions change.
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from tgms_tui.backend import hooks
from tgms_tui.widgets import format as fmt

from .background import run_in_background
from .live_list import LiveListScreen, selected

STATE_STYLE = {"active": "green", "active (retrying)": "yellow", "paused": "dim", "failing": "bold red"}
DELIVERY_STYLE = {"delivered": "green", "failed": "red", "sending": "cyan", "pending": "yellow"}
LOG_ROWS = 200
RELOAD_EVERY = 0.5


class ReplayRangeDialog(ModalScreen[str | None]):
    """`since` for a time-range replay (until now); dismisses with the checked text or None."""

    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, subscription_id: int) -> None:
        super().__init__()
        self.subscription_id = subscription_id

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = f"Replay to subscription {self.subscription_id}: every event since…"
            yield Input(placeholder="a duration ago (30m, 2h, 7d) or an ISO-8601 time", id="replay-since")
            yield Static("", id="replay-error")

    def on_mount(self) -> None:
        self.query_one("#replay-since", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            if hooks.parse_moment(event.value, "since") is None:
                raise hooks.HookError("since: give a duration ago (2h) or an ISO-8601 time")
        except hooks.HookError as exc:
            self.query_one("#replay-error", Static).update(Text(str(exc), style="bold red"))
            return
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HooksScreen(LiveListScreen):
    DEFAULT_CSS = """
    HooksScreen #hooks-subs { height: auto; max-height: 40%; }
    HooksScreen #hooks-log { height: 1fr; }
    """
    WATCHED = frozenset({"hook_subscriptions", "hook_deliveries", "*"})
    BINDINGS: ClassVar[list[Any]] = [
        Binding("r", "replay_delivery", "Replay"),
        Binding("R", "replay_range", "Replay since…"),
        Binding("t", "test_hook", "Test"),
        Binding("p", "pause_hook", "Pause/resume"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.subs: dict[str, hooks.Subscription] = {}
        self.log_rows: dict[str, hooks.Delivery] = {}
        self._reload_pending = False

    def compose_list(self) -> ComposeResult:
        with Vertical(id="hooks"):
            yield Static("Event webhooks: loading…", id="hooks-title")
            subs: DataTable[Any] = DataTable(id="hooks-subs", cursor_type="row", zebra_stripes=True)
            subs.add_columns("id", "state", "pending", "ok 24h", "url", "events")
            yield subs
            yield Static("", id="hooks-log-title")
            log: DataTable[Any] = DataTable(id="hooks-log", cursor_type="row", zebra_stripes=True)
            log.add_columns("delivery", "event", "group/lane", "status", "attempt", "code", "latency", "at", "error")
            yield log

    def _changed(self) -> None:
        """Deliveries change many times a second under load: reload at most every RELOAD_EVERY s
        (a reload per notice would be cancelled by the next one and never finish)."""
        if not self._reload_pending:
            self._reload_pending = True
            self.set_timer(RELOAD_EVERY, self._timed_reload)

    def _timed_reload(self) -> None:
        self._reload_pending = False
        self.reload()

    async def _load(self) -> None:
        listed = await self.tgms.attempt(hooks.list_subscriptions, "Loading event webhooks")
        if listed is None or not self.is_attached:
            return
        table = self.query_one("#hooks-subs", DataTable)
        keep = table.cursor_row
        table.clear()
        self.subs = {}
        for s in listed:
            key = str(s.subscription_id)
            self.subs[key] = s
            table.add_row(
                key,
                Text(s.state, style=STATE_STYLE.get(s.state, "")),
                str(s.pending),
                str(s.delivered_24h),
                fmt.text(s.url, limit=60),
                fmt.text(", ".join(s.events), limit=80),
                key=key,
            )
        if listed:
            table.move_cursor(row=min(max(keep, 0), len(listed) - 1))
        failing = sum(1 for s in listed if s.status == "failing")
        title = f"Event webhooks: {len(listed)} subscription(s)" + (f", {failing} failing" if failing else "")
        self.query_one("#hooks-title", Static).update(title if listed else "Event webhooks: none (tgms hooks add URL)")
        await self._load_log()

    def _current_sub(self) -> hooks.Subscription | None:
        return selected(self.query_one("#hooks-subs", DataTable), self.subs)

    def _current_delivery(self) -> hooks.Delivery | None:
        return selected(self.query_one("#hooks-log", DataTable), self.log_rows)

    async def _load_log(self) -> None:
        sub = self._current_sub()
        table = self.query_one("#hooks-log", DataTable)
        title = self.query_one("#hooks-log-title", Static)
        if sub is None:
            table.clear()
            self.log_rows = {}
            title.update("")
            return
        rows = await self.tgms.attempt(
            lambda conn: hooks.deliveries(conn, subscription_id=sub.subscription_id, limit=LOG_ROWS),
            "Loading the delivery log",
        )
        if rows is None or not self.is_attached:
            return
        keep = table.cursor_row
        table.clear()
        self.log_rows = {}
        for d in rows:
            key = str(d.delivery_id)
            self.log_rows[key] = d
            replay = f" ↺{d.replay_of}" if d.replay_of else ""
            table.add_row(
                key + replay,
                d.event_type,
                d.lane,
                Text(d.status, style=DELIVERY_STYLE.get(d.status, "")),
                str(d.attempts),
                "" if d.last_status_code is None else str(d.last_status_code),
                "" if d.last_latency_ms is None else f"{d.last_latency_ms:.1f} ms",
                fmt.timestamp(d.last_attempt_at or d.created_at),
                fmt.text(d.last_error or "", limit=160),
                key=key,
            )
        if rows:
            table.move_cursor(row=min(max(keep, 0), len(rows) - 1))
        reason = f" — {sub.status_reason}" if sub.status_reason else ""
        title.update(fmt.text(f"Subscription {sub.subscription_id}: latest {len(rows)} deliveries{reason}"))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.is_attached and event.data_table.id == "hooks-subs":
            run_in_background(self, self._load_log, group="log", exclusive=True)

    def action_replay_delivery(self) -> None:
        if self.refused("replay_delivery", "replaying a delivery"):
            return
        delivery = self._current_delivery()
        if delivery is None:
            self.notify("Select a delivery in the log first.", severity="warning", timeout=4)
            return
        run_in_background(self, partial(self._replay, delivery.delivery_id), group="action")

    async def _replay(self, delivery_id: int) -> None:
        new_id = await self.tgms.attempt(lambda conn: hooks.replay(conn, delivery_id), "Replay")
        if new_id is not None:
            self.notify(f"Delivery {delivery_id} queued again as {new_id}.", timeout=4)
            self.reload()

    def action_replay_range(self) -> None:
        if self.refused("replay_range", "replaying events"):
            return
        sub = self._current_sub()
        if sub is not None:
            run_in_background(self, partial(self._replay_range, sub.subscription_id), group="action")

    async def _replay_range(self, sub_id: int) -> None:
        since_text = await self.app.push_screen_wait(ReplayRangeDialog(sub_id))
        if since_text is None:
            return
        since = hooks.parse_moment(since_text, "since")
        assert since is not None

        async def replay(conn: Any) -> int:
            return await hooks.replay_range(conn, sub_id, since, await hooks.db_now(conn))

        try:
            count = await self.tgms.run_db(replay)
        except hooks.HookError as exc:
            self.notify(str(exc), severity="warning", timeout=5)
            return
        except Exception as exc:  # DatabaseUnavailable: already shown in the status bar
            self.notify(f"Replay failed: {exc}", severity="error", timeout=6)
            return
        self.notify(f"{count} event(s) since {since:%Y-%m-%d %H:%M %Z} queued again.", timeout=4)
        self.reload()

    def action_test_hook(self) -> None:
        if self.refused("test_hook", "sending a test event"):
            return
        sub = self._current_sub()
        if sub is not None:
            run_in_background(self, partial(self._test, sub.subscription_id), group="action")

    async def _test(self, sub_id: int) -> None:
        delivery_id = await self.tgms.attempt(lambda conn: hooks.send_test(conn, sub_id), "Test event")
        if delivery_id is not None:
            self.notify(f"hook.test queued as delivery {delivery_id}.", timeout=4)
            self.reload()

    def action_pause_hook(self) -> None:
        if self.refused("pause_hook", "pausing or resuming a subscription"):
            return
        sub = self._current_sub()
        if sub is not None:
            run_in_background(self, partial(self._pause_or_resume, sub), group="action")

    async def _pause_or_resume(self, sub: hooks.Subscription) -> None:
        resume = sub.status != "active"
        change = hooks.resume if resume else hooks.pause
        done = await self.tgms.attempt(lambda conn: change(conn, sub.subscription_id), "Pause/resume")
        if done:
            self.notify(f"Subscription {sub.subscription_id} {'resumed' if resume else 'paused'}.", timeout=4)
            self.reload()
