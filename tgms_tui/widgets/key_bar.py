"""The bottom line: the keys that work right now (focused pane first, then the screen's and the app's).

Textual's Footer rebuilds one widget per key on every focus change; with large tables on screen that
made switching panes visibly slow. This renders the same bindings as one line of text, keeping help
and the palette at the right edge even when the rest has to be cut.
"""

from __future__ import annotations

from rich.text import Text
from textual.events import Resize
from textual.widgets import Static

ALWAYS = ("help", "command_palette")


def _item(key: str, description: str) -> Text:
    return Text.assemble((f"{key}", "bold reverse"), f" {description}  ")


class KeyBar(Static):
    """Bindings of the focus chain as `key Description` pairs (keys in reverse video, not colour)."""

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, lambda _screen: self._render_keys())
        self._render_keys()

    def on_resize(self, event: Resize) -> None:
        self._render_keys()

    def _render_keys(self) -> None:
        items: list[Text] = []
        seen: set[str] = set()
        for active in self.screen.active_bindings.values():
            binding = active.binding
            if not binding.show or not active.enabled or binding.action in ALWAYS or binding.action in seen:
                continue
            seen.add(binding.action)
            items.append(_item(binding.key_display or self.app.get_key_display(binding), binding.description))
        width = self.size.width or 200
        right = [_item("?", "Help"), _item("^p", "Palette")]
        if sum(t.cell_len for t in items) + sum(t.cell_len for t in right) > width:
            right = right[:1]
        room = width - sum(t.cell_len for t in right)
        line = Text(no_wrap=True, end="")
        for item in items:
            if line.cell_len + item.cell_len > room:
                line.append("…  ")
                break
            line.append_text(item)
        line.append(" " * max(0, room - line.cell_len))
        for item in right:
            line.append_text(item)
        line.rstrip()
        self.update(line, layout=False)
