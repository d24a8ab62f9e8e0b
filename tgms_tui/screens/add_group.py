"""`+` in the groups pane: the id of a group to add (the TGMS worker then checks it with Telegram)."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static


class AddGroupScreen(ModalScreen[int | None]):
    """Dismisses with the chat id typed (enter), or None on escape."""

    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "cancel", "Back")]

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as dialog:
            dialog.border_title = "Add a group"
            yield Static(
                "Telegram chat id of the group (e.g. -1001234567890). The bot must be an administrator "
                "there with 'Invite Users via Link'. Enter to continue, escape to go back."
            )
            yield Input(placeholder="-100…", type="integer", id="group-id")
            yield Static("", id="add-group-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            group_id = int(event.value.strip())
        except ValueError:
            group_id = 0
        if group_id == 0:
            self.query_one("#add-group-error", Static).update("Type a chat id: a non-zero integer.")
            return
        self.dismiss(group_id)

    def action_cancel(self) -> None:
        self.dismiss(None)
