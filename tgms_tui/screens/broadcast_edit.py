"""`e` on a broadcast: not started yet, change its text (or caption) and send time; started, edit the
copies its groups already have (a follow-up edit: each copy keeps its debug code and its buttons).

Judged as you type by the same checks as a new broadcast — `validate_broadcast`, then
`debug_code.refusal` with the longest code this broadcast (its id is known) can get — and saved with
`broadcasts.edit_scheduled`, which checks again in its transaction and moves the job with the time, or
after a confirm (how many copies) with `followups.request(..., "edit")`, the CLI's and the API's call.
"""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static, TextArea

from tgms_tui.backend import broadcasts, debug_code, followups
from tgms_tui.backend.broadcasts import BroadcastNotFound, BroadcastStateError, BroadcastSummary
from tgms_tui.backend.message_validation import ValidationError, validate_broadcast
from tgms_tui.backend.send_time import FORMS, parse_send_time
from tgms_tui.widgets.key_bar import KeyBar

from .actions import is_allowed
from .background import run_in_background
from .confirm import ConfirmScreen

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp


class BroadcastEditScreen(ModalScreen[bool]):
    """Dismissed with True when the change was saved."""

    BINDINGS: ClassVar[list[Any]] = [
        Binding("ctrl+s", "save", "Save"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, broadcast: BroadcastSummary) -> None:
        super().__init__()
        self.broadcast = broadcast
        self.problem: ValidationError | None = None
        # Started: its copies are edited where they are (a follow-up); the send time is history.
        self.followup = broadcast.status != "pending"

    @property
    def tgms(self) -> TGMSApp:
        return cast("TGMSApp", self.app)

    def compose(self) -> ComposeResult:
        b = self.broadcast
        what = "Caption" if b.photo_url is not None else "Text"
        with Vertical(classes="dialog wide", id="broadcast-edit") as box:
            if self.followup:
                box.border_title = f"Edit the sent copies of broadcast {b.broadcast_id} ({b.sent:,} sent)"
            else:
                box.border_title = f"Edit broadcast {b.broadcast_id} (not started yet)"
            yield Label(f"{what} ({b.parse_mode or 'plain text'})", classes="field-label")
            yield TextArea(b.body, id="edit-body", soft_wrap=True, tab_behavior="focus")
            if self.followup:
                yield Label(
                    "Every copy is edited in its group, keeping its debug code and buttons; copies still to be "
                    "sent go out edited.",
                    classes="field-label",
                )
            else:
                yield Label(f"Send at (local): {FORMS}", classes="field-label")
                when = b.send_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if b.send_at else "now"
                yield Input(when, id="edit-send-at")
            yield Static("", id="edit-problems")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#edit-body", TextArea).focus()
        self._validate()

    def changes(self) -> dict[str, Any]:
        """What the form says, as `edit_scheduled` takes it (ValueError for a bad send time)."""
        field = "caption" if self.broadcast.photo_url is not None else "text"
        changes: dict[str, Any] = {field: self.query_one("#edit-body", TextArea).text}
        if not self.followup:
            changes["send_at"] = parse_send_time(self.query_one("#edit-send-at", Input).value)
        return changes

    @on(TextArea.Changed)
    @on(Input.Changed)
    def _validate(self) -> None:
        b = self.broadcast
        problem: ValidationError | None
        try:
            changes = self.changes()
            data: dict[str, Any] = {"parse_mode": b.parse_mode, "target": b.target, "final": b.is_final}
            if b.photo_url is not None:
                data["photo_url"] = b.photo_url
            data.update(changes)
            req = validate_broadcast(data)
            if self.followup and ((req.caption if req.photo_url else req.text) or "") == b.body:
                raise ValidationError(next(iter(changes)), "nothing changes")
            code = debug_code.longest(b.broadcast_id, broadcasts.ordinal_bound(b.target, b.total))
            problem = debug_code.refusal(req.text, req.photo_url, req.caption, req.parse_mode, code)
        except ValidationError as exc:
            problem = exc
        except ValueError as exc:
            problem = ValidationError("send_at", str(exc))
        self.problem = problem
        shown = self.query_one("#edit-problems", Static)
        if problem is None:
            shown.update(Text("✓ ctrl+s saves", style="bold green"))
        else:
            shown.update(Text(f"✗ {problem.field}: {problem.message}", style="bold red"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return is_allowed(self.app, action)

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_save(self) -> None:
        run_in_background(self, self._save, group="save", exclusive=True)

    async def _save(self) -> None:
        if self.tgms.refuse_if_read_only("editing a broadcast"):
            return
        self._validate()
        if self.problem is not None:
            self.notify(f"Not saved: {self.problem.field}: {self.problem.message}", severity="error", timeout=6)
            return
        changes = self.changes()
        broadcast_id = self.broadcast.broadcast_id
        if self.followup:
            await self._save_followup(changes)
            return

        async def save(conn: Any) -> BroadcastSummary | Exception:
            try:
                return await broadcasts.edit_scheduled(conn, broadcast_id, changes)
            except (ValidationError, BroadcastNotFound, BroadcastStateError) as exc:
                return exc

        result = await self.tgms.attempt(save, "Saving the broadcast")
        if result is None:
            return
        if isinstance(result, Exception):
            self.notify(f"Not saved: {result}", severity="error", timeout=6)
            return
        self.notify(f"Broadcast {broadcast_id} updated.", timeout=4)
        self.dismiss(True)

    async def _save_followup(self, changes: dict[str, Any]) -> None:
        b = self.broadcast
        reach = await self.tgms.attempt(lambda conn: followups.reach(conn, b.broadcast_id), "Counting the copies")
        if reach is None:
            return
        copies, _too_old = reach
        question = (
            f"Edit the {copies:,} cop{'y' if copies == 1 else 'ies'} of broadcast {b.broadcast_id}?\n\n"
            "Each is changed in its group (Telegram shows it as edited); its debug code and buttons stay."
        )
        if not await self.app.push_screen_wait(ConfirmScreen(question, yes="Edit the copies", no="Back")):
            return
        who = f"tui:{_user()}"

        async def save(conn: Any) -> int | Exception:
            try:
                return await followups.request(conn, b.broadcast_id, "edit", who, changes=changes)
            except (ValidationError, BroadcastNotFound, BroadcastStateError) as exc:
                return exc

        result = await self.tgms.attempt(save, "Requesting the edit")
        if result is None:
            return
        if isinstance(result, Exception):
            self.notify(f"Not edited: {result}", severity="error", timeout=6)
            return
        self.notify(f"Broadcast {b.broadcast_id}: edit #{result} enqueued for {copies:,} copies.", timeout=5)
        self.dismiss(True)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "operator"
