"""A DataTable kept in step with a keyed model, the way Dolphie and memray do it.

Each refresh hands the table the complete list of items. The table filters and sorts them in Python,
then changes only what differs: `update_cell` for changed cells, `add_row` / `remove_row` by key.
The highlighted row is tracked by key, so the cursor, the sort and the filter survive every refresh.
Clearing is reserved for the one case where it is cheaper than the keyed path: a filter change that
drops most rows at once (`remove_row` is O(n) per row in Textual 8).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from rich.text import Text
from textual.binding import Binding
from textual.events import Resize
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist, RowDoesNotExist

T = TypeVar("T")
Cell = Text | str

GAP = 1

# Rebuilding beats removing row by row once this many rows go in one update.
BULK_REMOVE_THRESHOLD = 64


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None = None
    sortable: bool = True
    right: bool = False  # numbers: right-aligned, the gap then goes on the left


class LiveTable(DataTable[Cell], Generic[T]):
    """Keyed, sortable, filterable live table. Subclasses describe columns and how items render."""

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    DEFAULT_SORT: ClassVar[str] = ""
    DEFAULT_REVERSE: ClassVar[bool] = False
    PANE_TITLE: ClassVar[str] = ""
    FLEX_COLUMN: ClassVar[str | None] = None
    FLEX_MIN: ClassVar[int] = 12

    BINDINGS: ClassVar[list[Any]] = [
        Binding("s", "cycle_sort", "Sort", tooltip="Sort by the next column"),
        Binding("S", "reverse_sort", "Reverse", show=False),
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("g", "scroll_top", "Top", show=False),
        Binding("G", "scroll_bottom", "Bottom", show=False),
    ]

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        # One blank column between cells instead of DataTable's two (padding 1 on each side): each
        # column is one wider than its content, which is what lets five columns fit at 100x30.
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=True, cell_padding=0)
        self.items: dict[str, T] = {}
        self.sort_column = self.DEFAULT_SORT or self.COLUMNS[0].key
        self.sort_reverse = self.DEFAULT_REVERSE
        self.filter_text = ""
        self._right_columns = [(i, c.width or 0) for i, c in enumerate(self.COLUMNS) if c.right]
        self._shown: dict[str, tuple[Cell, ...]] = {}
        self._sort_values: dict[str, Hashable] = {}
        self._loaded = False

    # ---------------------------------------------------------------- subclass hooks
    def key_of(self, item: T) -> str:
        raise NotImplementedError

    def cells(self, item: T) -> tuple[Cell, ...]:
        raise NotImplementedError

    def sort_value(self, item: T, column: str) -> Any:
        raise NotImplementedError

    def search_text(self, item: T) -> str:
        """Lower-case text the `/` filter matches against."""
        raise NotImplementedError

    def on_resize(self, event: Resize) -> None:
        self._fit_flex_column(self._inner_width())

    def columns_added(self) -> None:
        """Called once the columns exist (Textual calls every class's on_mount: no super() chains)."""
        self._fit_flex_column(self._inner_width())

    def _inner_width(self) -> int:
        # Inside the border, always leaving room for the vertical scrollbar (rows may arrive later).
        return self.outer_size.width - self.styles.gutter.width - self.styles.scrollbar_size_vertical

    def _fit_flex_column(self, width: int) -> None:
        """Give the flexible column (titles, errors) whatever width the others leave."""
        if self.FLEX_COLUMN is None or width <= 0 or self.FLEX_COLUMN not in self.columns:
            return
        others = sum(c.get_render_width(self) for k, c in self.columns.items() if k != self.FLEX_COLUMN)
        flex = self.columns[self.FLEX_COLUMN]  # type: ignore[index]
        new_width = max(self.FLEX_MIN, width - others)
        if flex.width != new_width:
            flex.width = new_width
            # DataTable has no public "column width changed": drop its render caches and re-measure.
            self._clear_caches()
            self._require_update_dimensions = True
            self.refresh()

    def summary(self) -> str:
        """Extra facts for the pane title (e.g. how many groups are failing)."""
        return ""

    # ---------------------------------------------------------------- lifecycle
    def on_mount(self) -> None:
        for column in self.COLUMNS:
            width = None if column.width is None else column.width + GAP
            label = _right(column.label, column.width or 0) if column.right else Text(column.label)
            self.add_column(label, key=column.key, width=width)
        self.columns_added()
        self._update_title()

    # ---------------------------------------------------------------- public API
    @property
    def loaded(self) -> bool:
        """True once the first data arrived (tests and the status bar wait on it)."""
        return self._loaded

    @property
    def cursor_key(self) -> str | None:
        """Key of the highlighted row, None when the table is empty."""
        if self.row_count == 0:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except (CellDoesNotExist, RowDoesNotExist):
            return None

    @property
    def cursor_item(self) -> T | None:
        key = self.cursor_key
        return None if key is None else self.items.get(key)

    def shown_keys(self) -> list[str]:
        """Row keys in display order."""
        return [row.key.value for row in self.ordered_rows if row.key.value is not None]

    def show(self, items: Iterable[T]) -> None:
        """Make the table show `items` (all of them; filtering happens here)."""
        self.items = {self.key_of(item): item for item in items}
        self._loaded = True
        self._sync()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        self._sync()

    def set_sort(self, column: str, reverse: bool | None = None) -> None:
        if column not in {c.key for c in self.COLUMNS if c.sortable}:
            raise ValueError(f"cannot sort by {column!r}")
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self._sort_values.clear()
        self._sync()

    def move_to_key(self, key: str) -> bool:
        try:
            index = self.get_row_index(key)
        except RowDoesNotExist:
            return False
        self.move_cursor(row=index, animate=False)
        return True

    # ---------------------------------------------------------------- actions
    def action_cycle_sort(self) -> None:
        sortable = [c.key for c in self.COLUMNS if c.sortable]
        index = sortable.index(self.sort_column) if self.sort_column in sortable else -1
        self.set_sort(sortable[(index + 1) % len(sortable)], reverse=False)

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort_column, reverse=not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        key = event.column_key.value
        if key is not None and any(c.key == key and c.sortable for c in self.COLUMNS):
            self.set_sort(key)

    # ---------------------------------------------------------------- the keyed diff
    def _visible(self) -> dict[str, T]:
        needle = self.filter_text
        if not needle:
            return self.items
        return {k: v for k, v in self.items.items() if needle in self.search_text(v)}

    def _order(self, visible: dict[str, T]) -> list[str]:
        column = self.sort_column

        tiebreak = self.DEFAULT_SORT or self.COLUMNS[0].key

        def key(k: str) -> tuple[Any, ...]:
            item = visible[k]
            value = self.sort_value(item, column)
            # None sorts last in either direction; mixed None/int would raise otherwise. Ties fall back
            # to the default order and then the key, so equal rows never swap between refreshes.
            missing = value is None
            second = self.sort_value(item, tiebreak) if column != tiebreak else None
            return (missing != self.sort_reverse, value if not missing else 0,
                    second is None, second if second is not None else 0, k)

        return sorted(visible, key=key, reverse=self.sort_reverse)

    def _sync(self) -> None:
        if not self.is_mounted:
            return
        cursor_key = self.cursor_key
        visible = self._visible()
        removed = [k for k in self._shown if k not in visible]
        with self.app.batch_update():
            if len(removed) > BULK_REMOVE_THRESHOLD:
                self._rebuild(visible)
            else:
                self._patch(visible, removed)
            if cursor_key is not None and cursor_key in self._shown:
                self.move_to_key(cursor_key)
        self._update_title()

    def _rebuild(self, visible: dict[str, T]) -> None:
        order = self._order(visible)
        self.clear()
        self._shown = {}
        for key in order:
            cells = self._keyed_cells(key, visible[key])
            self.add_row(*cells, key=key)
            self._shown[key] = cells
        self._sort_values = {k: self.sort_value(visible[k], self.sort_column) for k in order}

    def _patch(self, visible: dict[str, T], removed: Sequence[str]) -> None:
        for key in removed:
            self.remove_row(key)
            del self._shown[key]
            self._sort_values.pop(key, None)
        column_keys = [c.key for c in self.COLUMNS]
        resort = False
        for key, item in visible.items():
            cells = self._keyed_cells(key, item)
            old = self._shown.get(key)
            if old is None:
                self.add_row(*cells, key=key)
                resort = True
            elif old != cells:
                for column, before, after in zip(column_keys, old, cells, strict=True):
                    if before != after:
                        self.update_cell(key, column, after)
            self._shown[key] = cells
            value = self.sort_value(item, self.sort_column)
            if self._sort_values.get(key, _MISSING) != value:
                self._sort_values[key] = value
                resort = True
        if resort:
            position = {k: i for i, k in enumerate(self._order(visible))}
            # DataTable.sort only hands the key function cell values, so the first cell carries its row key.
            self.sort(column_keys[0], key=lambda cell: position[cell.row_key])

    def _keyed_cells(self, key: str, item: T) -> tuple[Cell, ...]:
        cells = list(self.cells(item))
        for index, width in self._right_columns:
            cells[index] = _right(cells[index], width)
        cells[0] = RowKeyText.of(key, cells[0])
        return tuple(cells)

    def _update_title(self) -> None:
        arrow = "▼" if self.sort_reverse else "▲"
        label = next((c.label for c in self.COLUMNS if c.key == self.sort_column), self.sort_column)
        parts = [f"{self.PANE_TITLE} {len(self._shown):,}" + (f"/{len(self.items):,}" if self.filter_text else "")]
        extra = self.summary()
        if extra:
            parts.append(extra)
        parts.append(f"sort {label.strip()}{arrow}")
        if self.filter_text:
            parts.append(f"filter “{self.filter_text}”")
        self.border_title = " · ".join(parts)


_MISSING = object()


def _right(cell: Cell, width: int) -> Text:
    """Right-aligned by padding (Rich's justify="right" would eat the one-column gap on the right)."""
    out = cell.copy() if isinstance(cell, Text) else Text(cell)
    out.pad_left(max(0, width - out.cell_len))
    return out


class RowKeyText(Text):
    """A cell that knows its row key (equality is still Text's: plain text and styles)."""

    row_key: str

    @classmethod
    def of(cls, key: str, cell: Cell) -> RowKeyText:
        source = cell if isinstance(cell, Text) else Text(cell)
        text = cls(source.plain, style=source.style, justify=source.justify, no_wrap=True, end="")
        text._spans = list(source.spans)
        text.row_key = key
        return text
