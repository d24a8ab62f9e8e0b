"""Yes/no before anything destructive or any broadcast (y / n / escape, like pg_activity and k9s)."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tgms_tui.widgets import format as fmt


class ConfirmScreen(ModalScreen[bool]):
    """Dismisses with True only on an explicit yes; escape and n say no."""

    BINDINGS: ClassVar[list[Any]] = [
        Binding("y", "yes", "Yes"),
        Binding("n", "no", "No"),
        Binding("escape", "no", "No", show=False),
    ]

    def __init__(self, question: str, *, yes: str = "Yes", no: str = "No", title: str = "Please confirm") -> None:
        super().__init__()
        self.question = question
        self.yes_label = yes
        self.no_label = no
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog") as dialog:
            dialog.border_title = Text(fmt.plain(self.title_text, 80))
            # The question quotes titles, job types, message text: literal, never markup.
            yield Static(fmt.literal(self.question), id="question")
            with Horizontal(classes="buttons"):
                # Text, not str: "[y]" would be read as markup and vanish.
                yield Button(Text(f"[y] {fmt.plain(self.yes_label)}"), id="yes", variant="error")
                yield Button(Text(f"[n] {fmt.plain(self.no_label)}"), id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe answer has focus: enter does nothing harmful

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_yes(self) -> None:
        self.dismiss(True)

    def action_no(self) -> None:
        self.dismiss(False)


class ChoiceScreen(ModalScreen[str | None]):
    """A question with a few answers, each with its key (e.g. pin silently or with a notification);
    escape dismisses with None, and the focused answer is the last one: put the safe one there."""

    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "none", "Back", show=False)]

    def __init__(self, question: str, choices: list[tuple[str, str, str]], *, title: str = "Please choose") -> None:
        super().__init__()
        self.question = question
        self.choices = choices  # (key, label, value)
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="dialog") as dialog:
            dialog.border_title = Text(fmt.plain(self.title_text, 80))
            yield Static(fmt.literal(self.question), id="question")
            with Horizontal(classes="buttons"):
                for i, (key, label, _value) in enumerate(self.choices):
                    safe = i == len(self.choices) - 1
                    yield Button(
                        Text(f"[{key}] {fmt.plain(label)}"), id=f"choice-{i}", variant="primary" if safe else "error"
                    )

    def on_mount(self) -> None:
        self.query_one(f"#choice-{len(self.choices) - 1}", Button).focus()

    def on_key(self, event: Any) -> None:
        for key, _label, value in self.choices:
            if event.key == key:
                event.stop()
                self.dismiss(value)
                return

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        index = int(str(event.button.id).removeprefix("choice-"))
        self.dismiss(self.choices[index][2])

    def action_none(self) -> None:
        self.dismiss(None)
