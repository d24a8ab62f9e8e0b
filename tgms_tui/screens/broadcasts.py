"""`B`: every broadcast, live — how it went, to whom, when, by whom. Enter reopens its progress; a
broadcast not started yet can be edited (`e`) or cancelled (`x`), a running one stopped (`x`). Once
copies went out they can be edited (`e`), retracted (`D`), pinned (`P`, silently or not) and unpinned
(`U`): each asks first, saying how many copies it touches and how many are past Telegram's 48 hours,
and runs as a follow-up job whose outcome per group the progress screen shows.

Actions on one broadcast are a table (`_pane_action`): a follow-up action is one more entry here, one
key in `actions.py` and one backend function, the same function the CLI and the admin API call.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, ClassVar, cast

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.events import Key
from textual.screen import Screen

from tgms_tui.backend import broadcasts, followups
from tgms_tui.backend.broadcasts import BroadcastNotFound, BroadcastStateError, BroadcastSummary
from tgms_tui.backend.live import ALL_TABLES, RefreshScheduler
from tgms_tui.errors import DatabaseUnavailable
from tgms_tui.messages import PaneAction
from tgms_tui.widgets.broadcasts import BroadcastsTable, describe_target
from tgms_tui.widgets.key_bar import KeyBar
from tgms_tui.widgets.status_bar import StatusBar

from .actions import is_allowed
from .broadcast_edit import BroadcastEditScreen
from .confirm import ChoiceScreen, ConfirmScreen
from .progress import BroadcastProgressScreen

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp

WATCHED = {"broadcasts", "sent_messages", ALL_TABLES}
SHOWN = 500  # the newest broadcasts; older ones: `tgms broadcast list --before ID`


class BroadcastsScreen(Screen[None]):
    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "back", "Back to dashboard")]

    def __init__(self) -> None:
        super().__init__()
        self.scheduler: RefreshScheduler | None = None

    @property
    def tgms(self) -> TGMSApp:
        return cast("TGMSApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(read_only=self.tgms.read_only, id="status")
        yield BroadcastsTable(id="broadcasts")
        yield KeyBar()

    def on_mount(self) -> None:
        # Many broadcasts each count their deliveries: twice a second is live enough while one runs.
        self.scheduler = RefreshScheduler(
            self._refresh, {"list"}, min_gap=max(0.5, self.tgms.min_refresh_gap), period=self.tgms.refresh_period
        )
        self.tgms.db_changed.subscribe(self, self._on_change)
        self.tgms.db_state_signal.subscribe(self, self.query_one(StatusBar).set_db)
        self.query_one(StatusBar).set_db(self.tgms.db_state)
        self.run_worker(self.scheduler.run(), group="refresh", exit_on_error=False)
        self.query_one(BroadcastsTable).focus()

    @property
    def table(self) -> BroadcastsTable:
        return self.query_one(BroadcastsTable)

    def _on_change(self, table: str) -> None:
        if table in WATCHED and self.scheduler is not None:
            self.scheduler.mark("list")

    async def _refresh(self, stale: frozenset[str]) -> bool:
        try:
            found = await self.tgms.run_db(lambda conn: broadcasts.list_broadcasts(conn, limit=SHOWN))
        except DatabaseUnavailable:
            return False
        if self.is_attached:
            self.table.show(found)
        return True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return is_allowed(self.app, action)

    def on_key(self, event: Key) -> None:
        # Read-only hides these bindings, so the key falls through: say what was refused, in this
        # screen's words (the app's generic message names the jobs pane's `x`).
        refused = {
            "x": "cancelling a broadcast",
            "e": "editing a broadcast",
            "D": "retracting a broadcast",
            "P": "pinning a broadcast",
            "U": "unpinning a broadcast",
        }.get(event.key)
        if refused is not None and self.tgms.read_only:
            event.stop()
            self.tgms.refuse_if_read_only(refused)

    def action_back(self) -> None:
        self.dismiss(None)

    # ---------------------------------------------------------------- actions on one broadcast
    @on(PaneAction)
    def _pane_action(self, message: PaneAction) -> None:
        message.stop()
        action, item = message.action, message.item
        if not is_allowed(self.app, action):
            self.tgms.refuse_if_read_only(action.replace("_", " "))
            return
        handlers: dict[str, Callable[[BroadcastSummary], Coroutine[Any, Any, None]]] = {
            "open_broadcast": self._open,
            "edit_broadcast": self._edit,
            "cancel_broadcast": self._cancel,
            "retract_broadcast": lambda b: self._followup(b, "retract"),
            "pin_broadcast": lambda b: self._followup(b, "pin"),
            "unpin_broadcast": lambda b: self._followup(b, "unpin"),
        }
        handler = handlers.get(action)
        if handler is not None:
            self.run_worker(handler(item), name=action, group="actions", exit_on_error=False)

    async def _open(self, b: BroadcastSummary) -> None:
        targeted: list[int] = []
        if b.status == "pending":  # not started: show the groups it would reach now, as 'queued'
            found = await self.tgms.attempt(
                lambda conn: broadcasts.resolve_targets(conn, b.target, b.is_final), "Reading the targets"
            )
            targeted = found or []
        await self.app.push_screen(BroadcastProgressScreen(b.broadcast_id, targeted))

    async def _edit(self, b: BroadcastSummary) -> None:
        if b.status != "pending" and not b.sent:
            self.notify(
                f"Broadcast {b.broadcast_id} is {b.status} and no group has a copy: nothing to edit.",
                severity="warning",
                timeout=5,
            )
            return
        await self.app.push_screen(BroadcastEditScreen(b))
        self._mark()

    async def _followup(self, b: BroadcastSummary, action: str) -> None:
        """Retract, pin or unpin the copies sent: ask first (copies touched, too old to delete), then
        enqueue the follow-up that does it group by group."""
        if b.status == "pending":
            self.notify(
                f"Broadcast {b.broadcast_id} has not started: nothing was sent to {action} (cancel it with x).",
                severity="warning",
                timeout=5,
            )
            return
        reach = await self.tgms.attempt(lambda conn: followups.reach(conn, b.broadcast_id), "Counting the copies")
        if reach is None:
            return
        copies, too_old = reach
        if not copies:
            self.notify(f"Broadcast {b.broadcast_id}: no group has a copy to {action}.", severity="warning", timeout=5)
            return
        what = f"{copies:,} cop{'y' if copies == 1 else 'ies'} of broadcast {b.broadcast_id} ({describe_target(b)})"
        silent = False
        if action == "retract":
            old = (
                f"\n\n{too_old:,} of them are older than 48 hours: Telegram no longer deletes those, they are "
                "skipped and stay in their groups."
                if too_old
                else "\n\nAll are within Telegram's 48 hours."
            )
            question = f"Retract {what}?\n\nEach copy is deleted in its group for everyone.{old}"
            if not await self.app.push_screen_wait(ConfirmScreen(question, yes="Retract", no="Keep")):
                return
        elif action == "pin":
            question = (
                f"Pin {what}?\n\nWhere the bot may pin messages. A silent pin sends the members no notification."
                + (f"\n({too_old:,} of them are older than 48 hours; pinning still works.)" if too_old else "")
            )
            choice = await self.app.push_screen_wait(
                ChoiceScreen(
                    question,
                    [("s", "Pin silently", "silent"), ("l", "Pin and notify", "loud"), ("n", "Don't pin", "no")],
                    title="Pin",
                )
            )
            if choice not in ("silent", "loud"):
                return
            silent = choice == "silent"
        else:
            question = f"Unpin {what}?"
            if not await self.app.push_screen_wait(ConfirmScreen(question, yes="Unpin", no="Keep pinned")):
                return
        who = f"tui:{_user()}"

        async def request(conn: Any) -> int | str:
            try:
                return await followups.request(conn, b.broadcast_id, action, who, silent=silent)
            except (BroadcastNotFound, BroadcastStateError) as exc:
                return str(exc)

        result = await self.tgms.attempt(request, f"Requesting the {action}")
        if isinstance(result, str):
            self.notify(result, severity="warning", timeout=5)
        elif result is not None:
            self.notify(
                f"Broadcast {b.broadcast_id}: {action} #{result} enqueued for {copies:,} cop"
                f"{'y' if copies == 1 else 'ies'}; Enter shows each group's outcome.",
                timeout=5,
            )
        self._mark()

    async def _cancel(self, b: BroadcastSummary) -> None:
        if b.status in broadcasts.FINISHED:
            self.notify(f"Broadcast {b.broadcast_id} is already {b.status}.", severity="warning", timeout=4)
            return
        if b.status == "pending":
            question = (
                f"Cancel broadcast {b.broadcast_id} ({describe_target(b)})?\n\n"
                "It has not started: nothing will be sent."
            )
        else:
            question = (
                f"Stop broadcast {b.broadcast_id} ({describe_target(b)})?\n\n"
                f"{b.sent:,} group(s) already have it and keep it; the {b.pending:,} not sent yet will be "
                "skipped. A send under way finishes and is recorded."
            )
        if not await self.app.push_screen_wait(ConfirmScreen(question, yes="Cancel broadcast", no="Keep")):
            return
        who = f"tui:{_user()}"

        async def cancel(conn: Any) -> BroadcastSummary | str:
            try:
                return await broadcasts.cancel(conn, b.broadcast_id, who)
            except (BroadcastNotFound, BroadcastStateError) as exc:
                return str(exc)

        result = await self.tgms.attempt(cancel, "Cancelling the broadcast")
        if isinstance(result, str):
            self.notify(result, severity="warning", timeout=5)
        elif result is not None:
            self.notify(f"Broadcast {b.broadcast_id} cancelled ({result.sent:,} sent).", timeout=4)
        self._mark()

    def _mark(self) -> None:
        if self.scheduler is not None:
            self.scheduler.mark("list")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "operator"
