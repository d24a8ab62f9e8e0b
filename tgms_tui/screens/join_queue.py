"""The join-request queue: requests waiting for an operator (manual groups, failed verifications sent to
the queue, raid holds, decisions left ambiguous by a crash), with a banner naming the groups (or the
fleet) on hold and the named invite link each request came through.

Keys: space marks, `a` / `d` approve / decline the marked requests (or the one under the cursor), `A` / `D`
every waiting request of the cursor's group, `l` / `L` every waiting request that came through the
cursor's invite link (its source name, in every group), `r` releases the cursor's group from its hold,
`R` the fleet. Decisions are queued for the TGMS worker (which keeps to the bot's rate); each asks first.
Also `JoinPolicyScreen`, the group action that picks a group's join policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, OptionList, Static
from textual.widgets.option_list import Option

from tgms_tui.backend import join_gate
from tgms_tui.widgets import format as fmt

from .confirm import ConfirmScreen

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp

REFRESH_SECONDS = 2.0


async def _load(conn: Any) -> tuple[join_gate.FleetGate, list[join_gate.GroupGate], list[join_gate.QueuedRequest]]:
    return await join_gate.fleet(conn), await join_gate.held_groups(conn), await join_gate.list_requests(conn)


def banner_text(fleet: join_gate.FleetGate, held: list[join_gate.GroupGate]) -> Text:
    """What is on hold, in one line (empty when nothing is). Titles come from Telegram: literal."""
    parts = []
    if fleet.fleet_held:
        parts.append(f"FLEET ON HOLD until {fleet.fleet_held_until:%H:%M:%S} (R releases)")
    if held:
        names = ", ".join(fmt.plain(g.title or g.group_id, 40) for g in held[:5]) + (" ..." if len(held) > 5 else "")
        parts.append(f"{len(held)} group(s) on raid hold: {names} (r releases the cursor's group)")
    return Text("  |  ".join(parts))


class JoinQueueScreen(Screen[None]):
    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "back", "Back"),
        Binding("space", "mark", "Mark", key_display="␣"),
        Binding("a", "decide('approve', False)", "Approve"),
        Binding("d", "decide('decline', False)", "Decline"),
        Binding("A", "decide('approve', True)", "Approve group"),
        Binding("D", "decide('decline', True)", "Decline group"),
        Binding("l", "decide_link('approve')", "Approve link"),
        Binding("L", "decide_link('decline')", "Decline link"),
        Binding("r", "release", "Release group"),
        Binding("R", "release_fleet", "Release fleet", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, join_gate.QueuedRequest] = {}
        self.marked: set[int] = set()

    @property
    def tgms(self) -> TGMSApp:
        return cast("TGMSApp", self.app)

    def compose(self) -> ComposeResult:
        yield Static("", id="join-banner")
        table: DataTable[str | Text] = DataTable(id="join-queue", cursor_type="row")
        table.add_columns("", "id", "group", "user", "username", "status", "requested", "link", "note")
        yield table

    async def on_mount(self) -> None:
        await self.refresh_queue()
        self.set_interval(REFRESH_SECONDS, self.refresh_queue)
        self.query_one(DataTable).focus()

    async def refresh_queue(self) -> None:
        loaded = await self.tgms.attempt(_load, "Reading the join-request queue")
        if loaded is None:
            return
        fleet, held, rows = loaded
        banner = self.query_one("#join-banner", Static)
        text = banner_text(fleet, held)
        banner.update(text if text.plain else Text(f"No hold. {len(rows)} request(s) waiting."))
        banner.set_class(bool(text.plain), "-held")
        self.rows = {r.request_id: r for r in rows}
        self.marked &= set(self.rows)
        table: DataTable[str | Text] = self.query_one(DataTable)
        cursor = table.cursor_row
        table.clear()
        for r in rows:
            table.add_row(
                # Titles, usernames and notes come from Telegram: shown literally, never as markup.
                "●" if r.request_id in self.marked else "", str(r.request_id), fmt.text(r.title or r.chat_id, limit=40),
                str(r.user_id), fmt.text(r.username or "", limit=32), fmt.status(r.status),
                f"{r.requested_at:%m-%d %H:%M:%S}", fmt.text(r.link_name or "", limit=32),
                fmt.text(r.note or "", limit=80),
                key=str(r.request_id),
            )  # fmt: skip
        if rows:
            table.move_cursor(row=min(cursor, len(rows) - 1))

    def _current(self) -> join_gate.QueuedRequest | None:
        table: DataTable[str | Text] = self.query_one(DataTable)
        if not self.rows or table.cursor_row < 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.rows.get(int(key)) if key else None

    def action_back(self) -> None:
        self.app.pop_screen()

    async def action_mark(self) -> None:
        current = self._current()
        if current is not None:
            self.marked ^= {current.request_id}
            await self.refresh_queue()

    async def action_decide(self, decision: str, whole_group: bool) -> None:
        if self.tgms.refuse_if_read_only(f"{decision} join requests"):
            return
        current = self._current()
        if current is None:
            return
        if whole_group:
            ids, group, what = None, current.chat_id, f"every waiting request of {current.title or current.chat_id}"
        else:
            ids, group = sorted(self.marked) or [current.request_id], None
            what = f"{len(ids)} request(s)"
        question = f"{decision.capitalize()} {what}? Telegram is told at the bot's rate."
        self.app.push_screen(ConfirmScreen(question, yes=decision.capitalize(), no="Back"),
                             lambda yes: self._run_decision(yes, decision, ids, group))  # fmt: skip

    async def action_decide_link(self, decision: str) -> None:
        """Every waiting request that came through the cursor's invite link (by its source name, so
        in every group that has a link of that name)."""
        if self.tgms.refuse_if_read_only(f"{decision} join requests"):
            return
        current = self._current()
        if current is None:
            return
        if current.link_name is None:
            self.app.notify("This request did not come through a named invite link.", severity="warning", timeout=4)
            return
        name = current.link_name
        waiting = sum(1 for r in self.rows.values() if r.link_name == name)
        question = (
            f"{decision.capitalize()} every waiting request that came through the invite link "
            f"{fmt.plain(name, 40)!r} ({waiting:,} listed here)? Telegram is told at the bot's rate."
        )
        self.app.push_screen(ConfirmScreen(question, yes=decision.capitalize(), no="Back"),
                             lambda yes: self._run_decision(yes, decision, None, None, link=name))  # fmt: skip

    def _run_decision(
        self, yes: bool | None, decision: str, ids: list[int] | None, group: int | None, *, link: str | None = None
    ) -> None:
        if not yes:
            return

        async def work() -> None:
            result = await self.tgms.attempt(
                lambda conn: join_gate.request_decisions(conn, decision, by="tui", ids=ids, group_id=group, link=link),
                "Queueing the decision",
            )
            if result is not None:
                self.marked.clear()
                self.app.notify(f"{decision.capitalize()} of {len(result[1])} request(s) queued.", timeout=3)
                await self.refresh_queue()

        self.run_worker(work(), group="join-decisions", exit_on_error=False)

    async def action_release(self) -> None:
        current = self._current()
        if current is None or self.tgms.refuse_if_read_only("releasing a hold"):
            return
        if await self.tgms.perform(lambda conn: join_gate.release_group(conn, current.chat_id), "Releasing the group"):
            self.app.notify(f"Group {current.title or current.chat_id} released.", timeout=3)
            await self.refresh_queue()

    async def action_release_fleet(self) -> None:
        if self.tgms.refuse_if_read_only("releasing the fleet's hold"):
            return
        if await self.tgms.perform(join_gate.release_fleet, "Releasing the fleet"):
            self.app.notify("Fleet hold released.", timeout=3)
            await self.refresh_queue()


class JoinPolicyScreen(ModalScreen[str | None]):
    """Dismisses with the chosen join policy, or None on escape."""

    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "cancel", "Back")]
    POLICY_HELP: ClassVar[dict[str, str]] = {
        "auto": "approve at once",
        "verify": "the bot asks the requester in private to press a button first",
        "manual": "requests wait in the queue for an operator",
    }

    def __init__(self, current: str, group_label: str) -> None:
        super().__init__()
        self.current = current
        self.group_label = group_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as dialog:
            dialog.border_title = "Join policy"
            yield Static(fmt.literal(f"Join policy of {fmt.plain(self.group_label, 80)} (now: {self.current})"))
            yield OptionList(
                *(
                    Option(f"{'● ' if p == self.current else '  '}{p}: {self.POLICY_HELP[p]}", id=p)
                    for p in join_gate.POLICIES
                ),
                id="policies",
            )

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = join_gate.POLICIES.index(self.current) if self.current in join_gate.POLICIES else 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
