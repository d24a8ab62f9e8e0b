"""A keyed, sortable, filterable live table that renders only what is on screen.

Each refresh hands the table the complete list of typed rows. The table keeps them by row key, and
only a row whose item changed is rendered again; the cursor follows its row (by key), and the sort and
the filter are re-applied in Python, so all three survive every refresh. Nothing is cleared and
refilled.

Why not Textual's DataTable: with 10,000 groups, any `update_cell` invalidates DataTable's row order
and line-offset caches (rebuilt row by row on the next frame), new rows are measured cell by cell, and
`remove_row` is O(n) per row (Textual#5273): refreshes, sorting and filtering took hundreds of ms to
seconds. This widget uses the Line API (ScrollView + render_line, as toolong does): the cost of a frame
depends on the rows visible, not on the rows held.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, ClassVar, Generic, TypeVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .format import plain

T = TypeVar("T")
Cell = Text | str

GAP = 1  # blank columns between cells
HEADER_HEIGHT = 1
GUTTER = 1  # left of every row: ▶ marks the cursor row (▷ when the table has no focus), without colour


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int | None = None
    sortable: bool = True
    right: bool = False  # numbers: right-aligned
    min_width: int | None = None  # may shrink to this when the flexible column would get too little
    clip_middle: bool = False  # too long: cut the middle, keep the end (`host:pid` keeps its pid)


class LiveTable(ScrollView, Generic[T], can_focus=True):
    """Subclasses describe the columns and how an item renders, sorts and matches the filter."""

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    DEFAULT_SORT: ClassVar[str] = ""
    DEFAULT_REVERSE: ClassVar[bool] = False
    PANE_TITLE: ClassVar[str] = ""
    KEY_FIELD: ClassVar[str] = ""  # the item attribute whose str() is the row key (else key_of)
    FLEX_COLUMN: ClassVar[str | None] = None  # takes whatever width the other columns leave
    FLEX_MIN: ClassVar[int] = 12
    # A feed (jobs, join requests): with the cursor on the first (or last) row, the cursor stays on
    # the first (last) row as rows come and go, like `tail -f`; anywhere else it stays on its row.
    FOLLOW: ClassVar[bool] = False
    # The filter runs in the database (the screen reloads the rows with `filter_text`): the table
    # holds a window of a large table, and matching only the window would miss the rest.
    SERVER_FILTER: ClassVar[bool] = False

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "live-table--header",
        "live-table--cursor",
        "live-table--cursor-blurred",
    }

    DEFAULT_CSS = """
    LiveTable {
        background: $surface;
        color: $foreground;
        & > .live-table--header { text-style: bold; background: $panel; }
        & > .live-table--cursor { background: $block-cursor-background; color: $block-cursor-foreground;
                                  text-style: $block-cursor-text-style; }
        & > .live-table--cursor-blurred { background: $block-cursor-blurred-background;
                                          color: $block-cursor-blurred-foreground; }
    }
    """

    BINDINGS: ClassVar[list[Any]] = [
        Binding("up,k", "cursor_up", "Up", show=False),
        Binding("down,j", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home,g", "first", "Top", show=False),
        Binding("end,G", "last", "Bottom", show=False),
        # Not in the key bar (the pane title shows the sort): there is no room at 100 columns.
        Binding("s", "cycle_sort", "Sort", show=False),
        Binding("S", "reverse_sort", "Reverse", show=False),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=False, init=False)

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.items: dict[str, T] = {}
        self.sort_column = self.DEFAULT_SORT or self.COLUMNS[0].key
        self.sort_reverse = self.DEFAULT_REVERSE
        self.filter_text = ""
        self._order: list[str] = []  # visible keys, in display order
        self._index: dict[str, int] = {}  # key -> position in _order
        self._rendered: dict[str, T] = {}  # the item each cached row was rendered from
        self._cells: dict[str, tuple[int, tuple[Text, ...]]] = {}  # (render serial, cells)
        self._serial = 0
        self._ties: dict[str, tuple[Any, ...]] = {}  # default-order key per row, cached
        self._tie_order: list[str] | None = None  # every key in default order; None = recompute
        self._search: dict[str, tuple[T, str]] = {}
        self._strips: LRUCache[tuple[Any, ...], Strip] = LRUCache(512)
        self._widths: tuple[int, ...] = tuple(c.width or 10 for c in self.COLUMNS)
        self._generation = 0  # bumped when every cached strip is stale (widths, styles)
        self._loaded = False
        self.pane_title = ""  # the border title as plain text

    # ---------------------------------------------------------------- subclass hooks
    def key_of(self, item: T) -> str:
        raise NotImplementedError

    def cells(self, item: T) -> tuple[Cell, ...]:
        raise NotImplementedError

    SORT_KEYS: ClassVar[dict[str, Callable[[Any], Any]]] = {}  # column -> raw value to sort by

    def sort_value(self, item: T, column: str) -> Any:
        """The raw value rows sort by in `column` (not its formatted text); None sorts last."""
        return self.SORT_KEYS[column](item)

    def search_text(self, item: T) -> str:
        """Lower-case text the `/` filter matches against."""
        raise NotImplementedError

    def summary(self) -> str:
        """Extra facts for the pane title (e.g. how many groups are failing)."""
        return ""

    # ---------------------------------------------------------------- public API
    @property
    def loaded(self) -> bool:
        """True once the first data arrived."""
        return self._loaded

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_key(self) -> str | None:
        """Key of the highlighted row, None when the table is empty."""
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    @property
    def cursor_item(self) -> T | None:
        key = self.cursor_key
        return None if key is None else self.items.get(key)

    def shown_keys(self) -> list[str]:
        """Row keys in display order (after the filter)."""
        return list(self._order)

    def get_cell(self, key: str, column: str) -> Text:
        """The cell as rendered (for tests and copy): KeyError for an unknown row or column."""
        index = next(i for i, c in enumerate(self.COLUMNS) if c.key == column)
        return self._cells_for(key, self.items[key])[1][index]

    def show(self, items: Iterable[T]) -> None:
        """Make the table hold exactly `items` (filtering and sorting happen here)."""
        new = self._keyed(items)
        old, self.items = self.items, new
        self._loaded = True
        reorder = self._changed(new, old) or new.keys() != old.keys()
        for key in old.keys() - new.keys():
            self._drop(key)
        self._apply(reorder=reorder or bool(self.filter_text))

    def apply_changes(self, upserts: Iterable[T], deleted: Iterable[str] = ()) -> None:
        """Merge a few changed rows (and drop deleted ones) without handing over all the others."""
        changed = self._keyed(upserts)
        reorder = self._changed(changed, self.items) or not changed.keys() <= self.items.keys()
        self.items.update(changed)
        for key in deleted:
            if self.items.pop(key, None) is not None:
                self._drop(key)
                reorder = True
        self._loaded = True
        self._apply(reorder=reorder or bool(self.filter_text))

    def _keyed(self, items: Iterable[T]) -> dict[str, T]:
        rows = list(items)
        if self.KEY_FIELD:  # 10,000 rows: keys made in C, not by a Python call per row
            return dict(zip(map(str, map(attrgetter(self.KEY_FIELD), rows)), rows, strict=True))
        return {self.key_of(item): item for item in rows}

    def _changed(self, new: dict[str, T], old: dict[str, T]) -> bool:
        """Forget the rendering of rows whose item changed; True when one of them moves in the sort."""
        reorder = False
        rendered = self._rendered
        for key, item in new.items():
            before = rendered.get(key)
            if before is None:
                before = old.get(key)
                if before is None or before is item or before == item:
                    continue
            elif before is item or before == item:
                continue  # unchanged: the common case, a lookup and a C-level tuple comparison
            self._forget(key)
            if not reorder and self.sort_value(before, self.sort_column) != self.sort_value(item, self.sort_column):
                reorder = True
            tie = self._ties.pop(key, None)
            if tie is not None and tie != self._tie(key, item):
                self._tie_order = None
                reorder = True
        if not new.keys() <= old.keys():
            self._tie_order = None
        return reorder

    def _drop(self, key: str) -> None:
        self._forget(key)
        self._ties.pop(key, None)
        self._search.pop(key, None)
        self._tie_order = None

    def rerender(self, keys: Iterable[str] | None = None) -> None:
        """Draw these rows (all when None) again although their items did not change: their look
        depends on something else (marks)."""
        for key in list(self._rendered) if keys is None else keys:
            self._forget(key)
        self._apply(reorder=False)

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip().lower()
        self._apply(reorder=True)

    def set_sort(self, column: str, reverse: bool | None = None) -> None:
        if column not in {c.key for c in self.COLUMNS if c.sortable}:
            raise ValueError(f"cannot sort by {column!r}")
        if reverse is None:
            reverse = not self.sort_reverse if column == self.sort_column else False
        self.sort_column, self.sort_reverse = column, reverse
        self._apply(reorder=True)

    def move_to_key(self, key: str) -> bool:
        index = self._index.get(key)
        if index is None:
            return False
        self.cursor_row = index
        self._scroll_to_cursor()
        return True

    # ---------------------------------------------------------------- keeping order, cursor, title
    def _forget(self, key: str) -> None:
        self._rendered.pop(key, None)
        self._cells.pop(key, None)

    def _tie(self, key: str, item: T) -> tuple[Any, ...]:
        tie = self._ties.get(key)
        if tie is None:
            second = self.sort_value(item, self.DEFAULT_SORT or self.COLUMNS[0].key)
            tie = self._ties[key] = (second is None, 0 if second is None else second, key)
        return tie

    def _sorted(self, keys: list[str]) -> list[str]:
        """`keys` by the sort column; rows with no value last in either direction; ties in the default
        order (then by key), so equal rows never swap places between refreshes. Two stable sorts:
        the default order is cached, the sort column's values are read through C-level map()."""
        if self._tie_order is None:
            items = self.items
            self._tie_order = sorted(items, key=lambda k: self._tie(k, items[k]))
        base = self._tie_order
        if len(keys) != len(base):
            wanted = set(keys)
            base = [k for k in base if k in wanted]
        column = self.sort_column
        value = self.SORT_KEYS.get(column) or (lambda item: self.sort_value(item, column))
        values = dict(zip(base, map(value, map(self.items.__getitem__, base)), strict=True))
        present = [k for k in base if values[k] is not None]
        present.sort(key=values.__getitem__, reverse=self.sort_reverse)
        if len(present) != len(base):
            present.extend(k for k in base if values[k] is None)
        return present

    def _visible_keys(self) -> list[str]:
        needle = self.filter_text
        if not needle or self.SERVER_FILTER:
            return list(self.items)
        search = self._search
        keys = []
        for key, item in self.items.items():
            cached = search.get(key)
            if cached is None or not (cached[0] is item or cached[0] == item):
                cached = search[key] = (item, self.search_text(item))
            if needle in cached[1]:
                keys.append(key)
        return keys

    def _apply(self, *, reorder: bool) -> None:
        """Re-derive the visible order if needed, keep the cursor on its row (or edge), repaint."""
        cursor_key = self.cursor_key
        edge = self.following
        if reorder:
            keys = self._sorted(self._visible_keys())
            self._order = keys
            self._index = {k: i for i, k in enumerate(keys)}
            self.virtual_size = Size(self.virtual_size.width, len(keys) + HEADER_HEIGHT)
        if edge and self._order:
            self.set_reactive(LiveTable.cursor_row, 0 if edge == "top" else len(self._order) - 1)
        elif cursor_key is not None and cursor_key in self._index:
            self.set_reactive(LiveTable.cursor_row, self._index[cursor_key])
        elif self._order:
            self.set_reactive(LiveTable.cursor_row, min(self.cursor_row, len(self._order) - 1))
        self._scroll_to_cursor()
        self._update_title()
        self.refresh()

    def _update_title(self) -> None:
        arrow = "▼" if self.sort_reverse else "▲"
        label = next((c.label for c in self.COLUMNS if c.key == self.sort_column), self.sort_column)
        shown_of_all = self.filter_text and not self.SERVER_FILTER
        count = f"{len(self._order):,}" + (f"/{len(self.items):,}" if shown_of_all else "")
        parts = [f"{self.PANE_TITLE} {count}"]
        extra = self.summary()
        if extra:
            parts.append(extra)
        parts.append(f"sort {label.strip()}{arrow}")
        if self.filter_text:
            parts.append(f"filter “{plain(self.filter_text, 40)}”" + (" in db" if self.SERVER_FILTER else ""))
        edge = self.following
        if edge:
            parts.append("following ↑" if edge == "top" else "following ↓")
        title = " · ".join(parts)
        if title != self.pane_title:
            self.pane_title = title
            self.border_title = Text(title)  # Text: what was typed in the filter is never markup

    # ---------------------------------------------------------------- cursor and keys
    @property
    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - HEADER_HEIGHT)

    @property
    def following(self) -> str | None:
        """'top' or 'bottom' when this feed keeps its cursor on that edge (see FOLLOW), else None."""
        if not self.FOLLOW or len(self._order) < 1:
            return None
        if self.cursor_row == 0:
            return "top"
        return "bottom" if self.cursor_row >= len(self._order) - 1 else None

    def watch_cursor_row(self, old: int, new: int) -> None:
        if self.FOLLOW:
            self._update_title()
        self._scroll_to_cursor()
        self.refresh()

    def validate_cursor_row(self, row: int) -> int:
        return max(0, min(row, len(self._order) - 1)) if self._order else 0

    def _scroll_to_cursor(self) -> None:
        if not self._order or not self.is_mounted:
            return
        top = int(self.scroll_y)
        row = self.cursor_row
        if row < top:
            self.scroll_to(y=row, animate=False, immediate=True)
        elif row >= top + self._page:
            self.scroll_to(y=row - self._page + 1, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self.cursor_row -= 1

    def action_cursor_down(self) -> None:
        self.cursor_row += 1

    def action_page_up(self) -> None:
        self.cursor_row -= self._page

    def action_page_down(self) -> None:
        self.cursor_row += self._page

    def action_first(self) -> None:
        self.cursor_row = 0

    def action_last(self) -> None:
        self.cursor_row = len(self._order) - 1

    def action_cycle_sort(self) -> None:
        sortable = [c.key for c in self.COLUMNS if c.sortable]
        index = sortable.index(self.sort_column) if self.sort_column in sortable else -1
        self.set_sort(sortable[(index + 1) % len(sortable)], reverse=False)

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort_column, reverse=not self.sort_reverse)

    def on_click(self, event: events.Click) -> None:
        if event.y < HEADER_HEIGHT:  # a header click sorts by that column (again: reverses)
            x = event.x + int(self.scroll_x) - GUTTER
            for column, width in zip(self.COLUMNS, self._widths, strict=True):
                if x < width + GAP:
                    if column.sortable:
                        self.set_sort(column.key)
                    return
                x -= width + GAP
            return
        row = int(self.scroll_y) + event.y - HEADER_HEIGHT
        if 0 <= row < len(self._order):
            self.cursor_row = row

    # ---------------------------------------------------------------- geometry
    def on_resize(self, event: events.Resize) -> None:
        self._fit_columns()

    def on_mount(self) -> None:
        self._fit_columns()
        self._update_title()

    def _fit_columns(self) -> None:
        """Fixed widths, and the flexible column gets whatever the others leave."""
        inner = self.size.width - (0 if self.show_vertical_scrollbar else self.styles.scrollbar_size_vertical)
        widths = [c.width or 10 for c in self.COLUMNS]
        if self.FLEX_COLUMN is not None:
            flex = next(i for i, c in enumerate(self.COLUMNS) if c.key == self.FLEX_COLUMN)
            others = sum(w + GAP for i, w in enumerate(widths) if i != flex)
            short = self.FLEX_MIN - (inner - GUTTER - others - GAP)
            for i, column in enumerate(self.COLUMNS):
                if short > 0 and column.min_width is not None and i != flex:
                    give = min(short, widths[i] - column.min_width)
                    widths[i] -= give
                    short -= give
            others = sum(w + GAP for i, w in enumerate(widths) if i != flex)
            widths[flex] = max(self.FLEX_MIN, inner - GUTTER - others - GAP)
        new = tuple(widths)
        total = GUTTER + sum(w + GAP for w in new)
        if new != self._widths or self.virtual_size.width != total:
            self._widths = new
            self._generation += 1
            self.virtual_size = Size(total, len(self._order) + HEADER_HEIGHT)
            self.refresh()

    # ---------------------------------------------------------------- rendering
    def _cells_for(self, key: str, item: T) -> tuple[int, tuple[Text, ...]]:
        """The row's cells, made again only when its item changed; the serial names this rendering."""
        cached = self._cells.get(key)
        before = self._rendered.get(key)
        if cached is not None and before is not None and (before is item or before == item):
            return cached
        self._serial += 1
        made = (self._serial, tuple(c if isinstance(c, Text) else Text(plain(c)) for c in self.cells(item)))
        self._cells[key] = made
        self._rendered[key] = item
        return made

    def _line(self, cells: Iterable[Text], style: Style, marker: str = " ") -> Strip:
        line = Text(marker, style=style, no_wrap=True, end="")
        for column, width, cell in zip(self.COLUMNS, self._widths, cells, strict=True):
            text = cell.copy()
            text.no_wrap = True
            if text.cell_len > width:
                if column.clip_middle and width > 4:
                    tail = (width - 1) * 2 // 3
                    text = text[: width - 1 - tail] + Text("…") + text[len(text) - tail :]
                    text.truncate(width)  # wide characters
                else:
                    text.truncate(width, overflow="ellipsis")
            pad = width - text.cell_len
            if column.right:
                line.append(" " * pad)
                line.append_text(text)
            else:
                line.append_text(text)
                line.append(" " * pad)
            line.append(" " * GAP)
        segments = list(line.render(self.app.console))
        return Strip(segments, line.cell_len)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y < HEADER_HEIGHT:
            header_style = base + self.get_component_rich_style("live-table--header")
            header_key = ("header", self._generation, self.sort_column, self.sort_reverse, header_style)
            strip = self._strips.get(header_key)
            if strip is None:
                labels = []
                for column in self.COLUMNS:
                    mark = ("▼" if self.sort_reverse else "▲") if column.key == self.sort_column else ""
                    labels.append(Text(column.label + mark))
                strip = self._strips[header_key] = self._line(labels, header_style)
            return strip.crop_extend(int(self.scroll_x), int(self.scroll_x) + width, header_style)
        row = int(self.scroll_y) + y - HEADER_HEIGHT
        if row >= len(self._order):
            return Strip.blank(width, base)
        key = self._order[row]
        cursor = row == self.cursor_row
        style = base
        if cursor:
            name = "live-table--cursor" if self.has_focus else "live-table--cursor-blurred"
            style = base + self.get_component_rich_style(name)
        item = self.items[key]
        serial, cells = self._cells_for(key, item)
        # Keyed on the style too: a theme change re-renders, a focus change only the cursor row.
        cache_key = (serial, self._generation, style)
        strip = self._strips.get(cache_key)
        if strip is None:
            marker = " " if not cursor else "▶" if self.has_focus else "▷"
            strip = self._strips[cache_key] = self._line(cells, style, marker)
        return strip.crop_extend(int(self.scroll_x), int(self.scroll_x) + width, style)

    def on_focus(self, event: events.Focus) -> None:
        self.refresh()

    def on_blur(self, event: events.Blur) -> None:
        self.refresh()


def strip_text(strip: Strip) -> str:
    """The characters of a rendered line (tests read the screen through this)."""
    return "".join(segment.text for segment in strip if isinstance(segment, Segment))
