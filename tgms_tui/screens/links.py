"""Named invite links (L from the dashboard): per source, requests, approved, declined, joined, who
stayed 7 and 30 days, members and active members; the selected source's links group by group.
New link (c: in every active group, or the groups marked on the dashboard) and revoke all links of
a source (X), each after a confirmation — like `tgms links create|revoke`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from tgms_tui.backend import invite_links
from tgms_tui.backend.invite_links import LinkFigures
from tgms_tui.widgets import format as fmt

from .background import run_in_background
from .bans import operator
from .confirm import ConfirmScreen
from .live_list import LiveListScreen, selected


class NameDialog(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where = where

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = f"New invite link in {self.where}"
            yield Input(placeholder="source name, e.g. ads-june (up to 32 characters)", id="link-name")
            yield Static("", id="link-error")

    def on_mount(self) -> None:
        self.query_one("#link-name", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            name = invite_links.check_name(event.value)
        except invite_links.LinkError as exc:
            self.query_one("#link-error", Static).update(Text(str(exc), style="bold red"))
            return
        self.dismiss(name)

    def action_cancel(self) -> None:
        self.dismiss(None)


class LinksScreen(LiveListScreen):
    WATCHED = frozenset({"invite_links", "join_requests", "*"})
    BINDINGS: ClassVar[list[Any]] = [
        Binding("c", "new_link", "New link"),
        Binding("X", "revoke_links", "Revoke"),
    ]

    def __init__(self, marked: list[int] | None = None) -> None:
        super().__init__()
        self.marked = list(marked or [])
        self.sources: dict[str, invite_links.SourceLinks] = {}

    def compose_list(self) -> ComposeResult:
        with Vertical(id="links"):
            yield Static("Invite links: loading…", id="links-title")
            table: DataTable[Any] = DataTable(id="links-table", cursor_type="row", zebra_stripes=True)
            table.add_columns(
                "source", "links", "requests", "approved", "declined", "joined", "7d stay", "30d stay", "members",
                "active",
            )  # fmt: skip
            yield table
            yield Static("", id="links-groups")

    async def _load(self) -> None:
        sources = await self.tgms.attempt(invite_links.stats, "Loading invite links")
        if sources is None or not self.is_attached:
            return
        table = self.query_one("#links-table", DataTable)
        keep = table.cursor_row
        table.clear()
        self.sources = {}
        rate = LinkFigures.rate
        for s in sources:
            self.sources[s.name] = s
            f = s.figures
            states = " ".join(f"{n} {k}" for k, n in sorted(s.statuses.items()))
            table.add_row(
                fmt.text(s.name, limit=40), states, f.requests, f.approved, f.declined, f.joined,
                rate(f.stayed_7d, f.joined_7d_ago), rate(f.stayed_30d, f.joined_30d_ago), f.members, f.active,
                key=s.name,
            )  # fmt: skip
        if sources:
            table.move_cursor(row=min(keep, len(sources) - 1))
        self.query_one("#links-title", Static).update(
            f"Invite links: {len(sources)} source(s) (7d/30d stay: of those who joined that long ago, still in)"
        )
        self._show_groups()

    def _current(self) -> invite_links.SourceLinks | None:
        return selected(self.query_one("#links-table", DataTable), self.sources)

    def _show_groups(self) -> None:
        source = self._current()
        box = self.query_one("#links-groups", Static)
        if source is None:
            box.update("")
            return
        lines = Text(f"{fmt.plain(source.name, 60)}, group by group:\n", style="bold")
        for link in source.links[:200]:
            g = link.figures
            style = {"active": "green", "failed": "red", "revoked": "dim"}.get(link.status, "yellow")
            lines.append(f"{link.group_id:>16} {fmt.plain(link.title or '', 24):<24} ")
            lines.append(f"{link.status:<8}", style=style)
            lines.append(
                f" req {g.requests:>4} ok {g.approved:>4} in {g.members:>4}  "
                f"{fmt.plain(link.invite_link or link.error or '', 300)}\n"
            )
        box.update(lines)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_groups()

    def action_new_link(self) -> None:
        if self.refused("new_link", "creating invite links"):
            return
        run_in_background(self, self._new_link, group="action")

    async def _new_link(self) -> None:
        where = f"{len(self.marked)} marked group(s)" if self.marked else "every active group"
        name = await self.app.push_screen_wait(NameDialog(where))
        if name is None:
            return
        question = f"Create the invite link {name!r} (join requests) in {where}?"
        if not await self.app.push_screen_wait(ConfirmScreen(question, yes="Create", no="Cancel")):
            return
        groups = self.marked or None
        try:
            todo = await self.tgms.run_db(lambda conn: invite_links.create(conn, name, groups, operator()))
        except invite_links.LinkError as exc:
            self.notify(str(exc), severity="warning", timeout=5)
            return
        except Exception as exc:
            self.notify(f"Creating the link failed: {exc}", severity="error", timeout=6)
            return
        self.notify(f"Link {name!r}: creating in {todo} group(s)." if todo else "It exists there already.")
        self.reload()

    def action_revoke_links(self) -> None:
        if self.refused("revoke_links", "revoking invite links"):
            return
        run_in_background(self, self._revoke, group="action")

    async def _revoke(self) -> None:
        source = self._current()
        if source is None:
            return
        live = source.statuses.get("active", 0)
        name = fmt.plain(source.name, 60)
        question = f"Revoke all {live} active link(s) of {name!r}? Nobody can use them afterwards."
        if not live or not await self.app.push_screen_wait(ConfirmScreen(question, yes="Revoke", no="Keep")):
            return
        todo = await self.tgms.attempt(lambda conn: invite_links.revoke(conn, source.name), "Revoking the links")
        if todo is not None:
            self.notify(f"{source.name!r}: revoking {todo} link(s).", timeout=4)
        self.reload()
