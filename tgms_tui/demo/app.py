"""The TUI as `tgms demo` runs it: the real `TGMSApp` plus what only a demo needs.

- Ctrl-C quits (as `q` does) instead of Textual's "press ctrl+q" hint; SIGTERM/SIGHUP quit too, so the
  demo always gets to stop its processes.
- Notices from other threads (a child process died, the traffic script injected a fault) are queued
  and shown as notifications; a death stays on screen until dismissed (click it).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from typing import Any, ClassVar

from textual.binding import Binding

from tgms_tui.app import TGMSApp


class DemoApp(TGMSApp):
    BINDINGS: ClassVar[list[Any]] = [
        *TGMSApp.BINDINGS,
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, *args: Any, banner: str = "demo", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.banner = banner
        self._notices: list[tuple[str, str, str]] = []  # (title, text, severity)
        self._lock = threading.Lock()
        self.dead: list[str] = []

    def post_notice(self, text: str, *, title: str = "demo", severity: str = "information") -> None:
        """Thread-safe: queue a notification (shown within half a second)."""
        with self._lock:
            self._notices.append((title, text, severity))

    def report_dead(self, name: str, text: str) -> None:
        """Thread-safe: a child process died; say so in a notification that stays until dismissed."""
        with self._lock:
            self.dead.append(name)
            self._notices.append(("process died", text, "error"))

    async def on_mount(self) -> None:
        # No super() call: Textual runs TGMSApp.on_mount after this one by itself (handlers of every
        # class in the MRO are dispatched).
        self.set_interval(0.5, self._show_notices)
        self.notify(self.banner, title="tgms demo", timeout=15)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.exit)

    def _show_notices(self) -> None:
        with self._lock:
            notices, self._notices = self._notices, []
        for title, text, severity in notices:
            timeout = 24 * 3600.0 if severity == "error" else 8.0
            self.notify(text, title=title, severity=severity, timeout=timeout)  # type: ignore[arg-type]
