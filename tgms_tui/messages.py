"""Messages and signal payloads the control center's widgets and screens exchange."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.message import Message


class PaneAction(Message):
    """A pane key asks its screen to act on the highlighted row (screens do the database work)."""

    def __init__(self, action: str, item: Any) -> None:
        super().__init__()
        self.action = action
        self.item = item


@dataclass(frozen=True)
class DatabaseState:
    """Published on `TGMSApp.db_state` whenever reachability changes (the status bar shows it)."""

    connected: bool
    error: str | None = None
    since: float | None = None  # time.time() of the last transition


@dataclass(frozen=True)
class RefreshStats:
    """What the last dashboard refresh cost; shown in the status bar, read by the benchmark."""

    at: float
    milliseconds: float
    panes: frozenset[str]
