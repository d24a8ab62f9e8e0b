"""`?`: every key of the control center, from the same table the palette and read-only mode use."""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .actions import ACTIONS


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", key_display="?"),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        read_only = bool(getattr(self.app, "read_only", False))
        table = Table(box=None, padding=(0, 2), show_header=False, expand=True)
        table.add_column("key", style="bold", no_wrap=True, width=12)
        table.add_column("what")
        scope = None
        for spec in ACTIONS:
            if spec.scope != scope:
                scope = spec.scope
                table.add_row(Text(""), Text(""))
                table.add_row(Text(scope, style="bold underline"), Text(""))
            what = Text(spec.description)
            if spec.mutating:
                what.append("  (changes data)" if not read_only else "  (disabled: read-only)", style="dim")
            table.add_row(Text(spec.key), what)
        intro = Text.assemble(
            ("TGMS control center", "bold"),
            " — live view of groups, jobs, workers and join requests.\n",
            "Panes refresh on database change notifications (throttled) and every 2 s; p pauses.\n",
            "Status words and glyphs (✗ OFF, ! FAIL, ✗ STALE, ✗ FAILED) never rely on colour alone.",
        )
        if read_only:
            intro.append("\nREAD-ONLY: every action that changes data is hidden and refused.", style="bold")
        self.keys_table = table
        with VerticalScroll(classes="dialog help") as box:
            box.border_title = "Help — escape closes"
            yield Static(intro)
            yield Static(table)

    def action_close(self) -> None:
        self.dismiss(None)
