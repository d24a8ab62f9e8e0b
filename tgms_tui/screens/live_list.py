"""What the list-plus-detail screens (bans, links, event webhooks) share: a table of rows kept by key
with the selected row's detail below, a reload (one at a time) whenever a table in `WATCHED` changes,
escape back, and mutating keys refused in read-only mode. Each screen composes its own list
(`compose_list`) and loads it (`_load`); the app's chrome (status bar on top, key bar below) is
added here, so these screens show the database state and READ-ONLY like every other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable

from tgms_tui.widgets.key_bar import KeyBar
from tgms_tui.widgets.status_bar import StatusBar

from .actions import is_allowed
from .background import run_in_background

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp

T = TypeVar("T")


def selected(table: DataTable[Any], rows: Mapping[str, T]) -> T | None:
    """The row under the table's cursor, by the key it was added with (None: empty table)."""
    if not rows or table.cursor_row < 0:
        return None
    key = table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value
    return rows.get(str(key))


class LiveListScreen(Screen[None]):
    WATCHED: ClassVar[frozenset[str]] = frozenset()
    BINDINGS: ClassVar[list[Any]] = [Binding("escape", "back", "Back")]

    @property
    def tgms(self) -> TGMSApp:
        return cast("TGMSApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(read_only=self.tgms.read_only, id="status")
        yield from self.compose_list()
        yield KeyBar()

    def compose_list(self) -> ComposeResult:
        raise NotImplementedError

    def on_mount(self) -> None:
        bar = self.query_one(StatusBar)
        bar.set_db(self.tgms.db_state)
        self.tgms.db_state_signal.subscribe(self, bar.set_db)
        self.reload()
        self.tgms.db_changed.subscribe(self, lambda table: self._changed() if table in self.WATCHED else None)

    def _changed(self) -> None:
        self.reload()

    def reload(self) -> None:
        if self.is_attached:
            run_in_background(self, self._load, group="load", exclusive=True)

    async def _load(self) -> None:
        raise NotImplementedError

    def action_back(self) -> None:
        self.app.pop_screen()

    def refused(self, action: str, what: str) -> bool:
        """True (and said in the status line) when read-only mode refuses `action`."""
        if is_allowed(self.app, action):
            return False
        self.tgms.refuse_if_read_only(what)
        return True
