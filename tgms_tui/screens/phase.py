"""Choose a group's phase: growth (joins approved, broadcasts) or monitoring."""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from tgms_tui.backend.group_actions import PHASES
from tgms_tui.widgets import format as fmt


class PhaseScreen(ModalScreen[str | None]):
    """Dismisses with the chosen phase, or None on escape."""

    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "cancel", "Back")]

    def __init__(self, current: str, group_label: str) -> None:
        super().__init__()
        self.current = current
        self.group_label = group_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as dialog:
            dialog.border_title = "Set phase"
            # The label holds a group title (from Telegram): literal text, never markup.
            yield Static(fmt.literal(f"Phase of {self.group_label} (now: {self.current})"), id="phase-question")
            yield OptionList(*(Option(f"{'● ' if p == self.current else '  '}{p}", id=p) for p in PHASES), id="phases")

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        options.highlighted = PHASES.index(self.current) if self.current in PHASES else 0
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
