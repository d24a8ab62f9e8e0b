"""`?`: every key of the control center, from the same table the palette and read-only mode use.

The keys are laid out in two columns so that the whole list fits a 140x45 terminal; on a smaller
one the list scrolls, and the frame says so (a scrollbar, and "more below" until the end is shown).
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .actions import ACTIONS, ActionSpec

TITLE = "Help: every key (escape closes)"


def scope_table(specs: list[ActionSpec], read_only: bool) -> Table:
    """One column of the list: each scope's keys under its name."""
    table = Table(box=None, padding=(0, 1), show_header=False, expand=True)
    table.add_column("key", style="bold", no_wrap=True, width=13)
    table.add_column("what")
    scope = None
    for spec in specs:
        if spec.scope != scope:
            if scope is not None:
                table.add_row(Text(""), Text(""))
            scope = spec.scope
            table.add_row(Text(scope, style="bold underline"), Text(""))
        what = Text(spec.description)
        if spec.mutating:
            what.append(" *" if not read_only else "  (disabled: read-only)", style="bold")
        table.add_row(Text(spec.key), what)
    return table


def split_scopes(specs: tuple[ActionSpec, ...]) -> tuple[list[ActionSpec], list[ActionSpec]]:
    """Two runs of whole scopes with about the same number of lines (a scope is never split)."""
    scopes: list[list[ActionSpec]] = []
    for spec in specs:
        if not scopes or scopes[-1][0].scope != spec.scope:
            scopes.append([])
        scopes[-1].append(spec)
    lines = [len(s) + 2 for s in scopes]  # the scope's name and a blank line
    best, cut = sum(lines), 0
    for i in range(len(scopes) + 1):
        taller = max(sum(lines[:i]), sum(lines[i:]))
        if taller < best:
            best, cut = taller, i
    return [s for group in scopes[:cut] for s in group], [s for group in scopes[cut:] for s in group]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "close", "Close"),
        Binding("question_mark", "close", "Close", key_display="?"),
        Binding("q", "close", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        read_only = bool(getattr(self.app, "read_only", False))
        intro = Text.assemble(
            ("TGMS control center", "bold"),
            ": live view of groups, jobs, workers and join requests. Panes refresh on database ",
            "change notifications (throttled) and every 2 s; p pauses. Status words and glyphs ",
            "(✗ OFF, ! FAIL, ✗ STALE, ✗ FAILED) never rely on colour alone. * changes data.",
        )
        if read_only:
            intro.append("\nREAD-ONLY: every action that changes data is hidden and refused.", style="bold")
        left, right = split_scopes(ACTIONS)
        self.keys_table = Table.grid(padding=(0, 3), expand=True)
        self.keys_table.add_column(ratio=1)
        self.keys_table.add_column(ratio=1)
        self.keys_table.add_row(scope_table(left, read_only), scope_table(right, read_only))
        with VerticalScroll(id="help-box", classes="dialog help") as box:
            box.border_title = TITLE
            yield Static(intro, id="help-intro")
            yield Static(self.keys_table, id="help-keys")

    def on_mount(self) -> None:
        box = self.query_one("#help-box", VerticalScroll)
        box.focus()  # ↑ ↓ pgup pgdn home end scroll it
        self.watch(box, "scroll_y", self._show_position, init=False)
        self.call_after_refresh(self._show_position)

    def on_resize(self) -> None:
        self.call_after_refresh(self._show_position)

    @property
    def more_below(self) -> bool:
        """True while part of the list is below the frame."""
        box = self.query_one("#help-box", VerticalScroll)
        return box.max_scroll_y > 0 and box.scroll_y < box.max_scroll_y

    def _show_position(self, _value: object = None) -> None:
        box = self.query_one("#help-box", VerticalScroll)
        if self.more_below:
            box.border_subtitle = Text("↓ more below: ↓ pgdn end scroll")
        elif box.max_scroll_y > 0:
            box.border_subtitle = Text("end of the list: ↑ pgup home scroll back")
        else:
            box.border_subtitle = None

    def action_close(self) -> None:
        self.dismiss(None)
