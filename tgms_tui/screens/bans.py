"""The fleet's ban list (B from the dashboard): who is banned, why, by whom, until when, and how the
ban went group by group; ban (n) and unban (u) with a confirmation, like `tgms ban` / `tgms unban`.

Live: the list reloads when `fleet_bans` or `fleet_ban_groups` change (the worker applying a ban
updates the per-group counts as it goes).
"""

from __future__ import annotations

import getpass
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Input, Static

from tgms_tui.backend import bans
from tgms_tui.widgets import format as fmt

from .background import run_in_background
from .confirm import ConfirmScreen
from .live_list import LiveListScreen, selected


def operator() -> str:
    try:
        return f"tui:{getpass.getuser()}"
    except (KeyError, OSError):
        return "tui"


class BanDialog(ModalScreen[tuple[int, str, str] | None]):
    """User id, reason and optional end; dismisses with the checked values or None."""

    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "cancel", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = "Ban a user in every managed group"
            yield Input(placeholder="Telegram user id", id="ban-user")
            yield Input(placeholder="reason (kept with the ban)", id="ban-reason")
            yield Input(placeholder="until: empty = for ever, or 30m / 12h / 7d / 2w / ISO time", id="ban-until")
            yield Static("", id="ban-error")
            yield Button("Review", id="ban-review", variant="error")

    def on_mount(self) -> None:
        self.query_one("#ban-user", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._review()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self._review()

    def _review(self) -> None:
        value = {name: self.query_one(f"#ban-{name}", Input).value for name in ("user", "reason", "until")}
        try:
            bans.check_user_id(value["user"].strip())
            bans.check_reason(value["reason"])
            bans.parse_until(value["until"])
        except bans.BanError as exc:
            self.query_one("#ban-error", Static).update(Text(str(exc), style="bold red"))
            return
        self.dismiss((int(value["user"].strip()), value["reason"], value["until"]))

    def action_cancel(self) -> None:
        self.dismiss(None)


class BansScreen(LiveListScreen):
    WATCHED = frozenset({"fleet_bans", "fleet_ban_groups", "*"})
    BINDINGS: ClassVar[list[Any]] = [
        Binding("n", "new_ban", "Ban"),
        Binding("u", "unban", "Unban"),
        Binding("A", "toggle_all", "All/open"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.include_lifted = False
        self.rows: dict[str, bans.Ban] = {}

    def compose_list(self) -> ComposeResult:
        with Vertical(id="bans"):
            yield Static("The fleet's ban list: loading…", id="bans-title")
            table: DataTable[Any] = DataTable(id="bans-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("user", "state", "until", "by", "banned at", "applied", "reason")
            yield table
            yield Static("", id="bans-groups")

    async def _load(self) -> None:
        include = self.include_lifted
        listed = await self.tgms.attempt(lambda conn: bans.list_bans(conn, include_lifted=include), "Loading bans")
        if listed is None or not self.is_attached:
            return
        table = self.query_one("#bans-table", DataTable)
        keep = table.cursor_row
        table.clear()
        self.rows = {}
        for b in listed:
            key = str(b.ban_id)
            self.rows[key] = b
            o = b.unban_outcome if b.lifted_at is not None and b.lifted_by != "expired" else b.ban_outcome
            applied = f"{o['done']} done · {o['failed']} failed" + (f" · {o['pending']} todo" if o["pending"] else "")
            style = {"banned": "bold red", "expired": "dim", "lifted": "green"}.get(b.state, "")
            table.add_row(
                str(b.user_id),
                Text(b.state, style=style),
                b.until.strftime("%Y-%m-%d %H:%M") if b.until else "for ever",
                fmt.text(b.banned_by, limit=40),
                b.banned_at.strftime("%Y-%m-%d %H:%M"),
                applied,
                fmt.text(b.reason, limit=200),
                key=key,
            )
        if listed:
            table.move_cursor(row=min(keep, len(listed) - 1))
        scope = "every entry" if self.include_lifted else "open entries"
        in_force = sum(1 for b in listed if b.in_force)
        self.query_one("#bans-title", Static).update(f"The fleet's ban list ({scope}): {in_force} in force")
        await self._show_groups()

    def _current(self) -> bans.Ban | None:
        return selected(self.query_one("#bans-table", DataTable), self.rows)

    async def _show_groups(self) -> None:
        ban = self._current()
        box = self.query_one("#bans-groups", Static)
        if ban is None:
            box.update("")
            return
        rows = await self.tgms.attempt(lambda conn: bans.groups_of(conn, ban.ban_id), "Loading the ban's groups")
        if rows is None or not self.is_attached:
            return
        lines = Text(f"User {ban.user_id}, group by group:\n", style="bold")
        for r in rows[:200]:
            style = {"done": "green", "failed": "red", "skipped": "dim"}.get(r.status, "yellow")
            lines.append(f"{r.action:<6} {r.group_id:>16} {fmt.plain(r.title or '', 28):<28} ")
            lines.append(f"{r.status:<8}", style=style)
            lines.append(f" {r.bot or '':<5} {fmt.plain(r.error or '', 300)}\n")
        box.update(lines)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if not self.is_attached:
            return
        run_in_background(self, self._show_groups, group="groups", exclusive=True)

    def action_toggle_all(self) -> None:
        self.include_lifted = not self.include_lifted
        self.reload()

    def action_new_ban(self) -> None:
        if self.refused("new_ban", "banning"):
            return
        run_in_background(self, self._new_ban, group="action")

    async def _new_ban(self) -> None:
        values = await self.app.push_screen_wait(BanDialog())
        if values is None:
            return
        user_id, reason, until_text = values
        until = bans.parse_until(until_text)
        ends = f"until {until:%Y-%m-%d %H:%M %Z}" if until else "for ever"
        question = f"Ban user {user_id} {ends} in every managed group?\n\nReason: {reason}"
        if not await self.app.push_screen_wait(ConfirmScreen(question, yes="Ban", no="Keep")):
            return
        try:
            result = await self.tgms.run_db(lambda conn: bans.ban(conn, user_id, reason, operator(), until))
        except bans.BanError as exc:
            self.notify(str(exc), severity="warning", timeout=5)
            return
        except Exception as exc:  # DatabaseUnavailable: already shown in the status bar
            self.notify(f"Ban failed: {exc}", severity="error", timeout=6)
            return
        self.notify(f"User {user_id} banned: applying in {result[1]} group(s).", timeout=4)
        self.reload()

    def action_unban(self) -> None:
        if self.refused("unban", "unbanning"):
            return
        run_in_background(self, self._unban, group="action")

    async def _unban(self) -> None:
        ban = self._current()
        if ban is None or ban.lifted_at is not None:
            self.notify("Select a ban that is not lifted yet.", severity="warning", timeout=4)
            return
        question = f"Lift the fleet ban of user {ban.user_id} everywhere?\n\nReason it was banned: {ban.reason}"
        if not await self.app.push_screen_wait(ConfirmScreen(question, yes="Unban", no="Keep")):
            return
        try:
            result = await self.tgms.run_db(lambda conn: bans.unban(conn, ban.user_id, operator()))
        except bans.BanError as exc:
            self.notify(str(exc), severity="warning", timeout=5)
            return
        except Exception as exc:
            self.notify(f"Unban failed: {exc}", severity="error", timeout=6)
            return
        self.notify(f"User {ban.user_id} unbanned: lifting in {result[1]} group(s).", timeout=4)
        self.reload()
