"""The top line: what you are looking at and whether you can trust it (live, paused, database lost)."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from tgms_tui.messages import DatabaseState, RefreshStats

from . import format as fmt


class StatusBar(Static):
    """`TGMS │ ● LIVE │ READ-ONLY │ db ok │ data 12:00:01 (23 ms)` — states in words, not colour."""

    def __init__(self, *, read_only: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.read_only = read_only
        self.paused = False
        self.db = DatabaseState(connected=False, error="connecting…")
        self.last: RefreshStats | None = None

    def on_mount(self) -> None:
        self.set_interval(1.0, self._render_bar)
        self._render_bar()

    def set_db(self, state: DatabaseState) -> None:
        self.db = state
        self.set_class(not state.connected, "-lost")
        self._render_bar()

    def set_paused(self, paused: bool) -> None:
        self.paused = paused
        self._render_bar()

    def set_refresh(self, stats: RefreshStats) -> None:
        self.last = stats
        self._render_bar()

    def _render_bar(self) -> None:
        bar = Text(no_wrap=True, overflow="ellipsis", end="")
        bar.append(" TGMS control center ", style="bold")
        bar.append("│ ")
        if self.paused:
            bar.append("⏸ PAUSED (p resumes)", style="bold reverse")
        else:
            bar.append("● LIVE", style="bold green")
        bar.append(" │ ")
        if self.read_only:  # before the database state: a long error must not push it off screen
            bar.append("READ-ONLY", style="bold reverse")
            bar.append(" │ ")
        if self.db.connected:
            bar.append("db ok", style="green")
        elif self.db.error == "connecting…":
            bar.append("db connecting…", style="yellow")
        else:
            lost_for = fmt.age(time.time() - self.db.since) if self.db.since else "?"
            error = fmt.plain(self.db.error, 200)
            bar.append(f"✗ DATABASE UNREACHABLE {lost_for}, retrying: {error}", style="bold reverse red")
        if self.last is not None:
            ago = time.time() - self.last.at
            stamp = time.strftime("%H:%M:%S", time.localtime(self.last.at))
            bar.append(f" │ data {stamp}", style="dim" if ago < 5 else "bold yellow")
            bar.append(f" ({self.last.milliseconds:.0f} ms)", style="dim")
        self.update(bar, layout=False)  # one line, always: no layout pass on every refresh
