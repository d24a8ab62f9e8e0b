"""The TGMS control center: a live, keyboard-first Textual app over the shared PostgreSQL.

The app owns the connection pool and the LISTEN connection; screens own their data. All database
work goes through `TGMSApp.run_db` (raises `DatabaseUnavailable`) or `TGMSApp.attempt` (reports and
returns None), which turn every psycopg/pool error into a visible status instead of an exception
that would end the app (an unhandled exception in a Textual worker or timer exits the app).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.events import Key
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.signal import Signal

from tgms_tui.backend.config import Settings
from tgms_tui.backend.db import open_pool
from tgms_tui.backend.live import GROUPS_CHANNEL, ChangeListener
from tgms_tui.backend.redaction import redact
from tgms_tui.errors import DatabaseUnavailable
from tgms_tui.messages import DatabaseState

from .screens.actions import ACTIONS, ActionSpec, is_allowed
from .screens.dashboard import DashboardScreen
from .screens.help import HelpScreen
from .widgets import format as fmt

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_ONLY_KEYS = {spec.key: spec.description for spec in ACTIONS if spec.mutating}

# A pooled connection that cannot be had within this many seconds counts as "database unreachable".
ACQUIRE_TIMEOUT = 3.0
# A notice names a group or quotes an error: a few lines at most, never a wall of text.
NOTICE_LIMIT = 400


def palette_actions(app: App[Any], screen: Screen[Any] | None = None) -> Iterator[ActionSpec]:
    """What the palette offers on `screen` (the one under the palette; mutations left out when
    read-only)."""
    on_dashboard = isinstance(screen or app.screen, DashboardScreen)
    for spec in ACTIONS:
        if spec.target == "none" or not is_allowed(app, spec.action):
            continue
        if spec.target != "app" and not on_dashboard:
            continue
        yield spec


async def run_spec(app: App[Any], spec: ActionSpec, screen: Screen[Any]) -> None:
    """Run an action from the palette on the widget that owns it."""
    if spec.target == "app":
        await app.run_action(spec.action)
        return
    if not isinstance(screen, DashboardScreen):
        return
    if spec.target == "screen":
        await app.run_action(spec.action, screen)
        return
    pane = screen.pane_for(spec.target)
    pane.focus()
    await app.run_action(spec.action, pane)


class TGMSCommands(Provider):
    """The command palette (ctrl+p): every action with its key."""

    def _label(self, spec: ActionSpec) -> str:
        scope = "" if spec.scope in ("Global", "Dashboard") else f"{spec.scope}: "
        return f"{scope}{spec.description}"

    async def discover(self) -> Hits:
        for spec in palette_actions(self.app, self.screen):
            yield DiscoveryHit(
                self._label(spec), partial(run_spec, self.app, spec, self.screen), help=f"key: {spec.key}"
            )

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec in palette_actions(self.app, self.screen):
            label = self._label(spec)
            score = matcher.match(f"{label} {spec.key}")
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(label),
                    partial(run_spec, self.app, spec, self.screen),
                    help=f"key: {spec.key}",
                )


class TGMSApp(App[int]):
    """`TGMSApp(url=..., settings=..., read_only=False)`; `run()` or `run_test()` it."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses (the demo's) live elsewhere
    TITLE = "TGMS control center"
    COMMANDS: ClassVar[set[Any]] = {*App.COMMANDS, TGMSCommands}
    BINDINGS: ClassVar[list[Any]] = [
        Binding("q", "quit", "Quit", show=False),  # every TUI's q: listed in help, not worth bar space
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("f1", "help", "Help", show=False),
    ]

    def __init__(
        self,
        url: str,
        settings: Settings | None = None,
        read_only: bool = False,
        *,
        refresh_period: float = 2.0,
        min_refresh_gap: float = 0.15,
    ) -> None:
        super().__init__()
        self.url = url
        self.settings = settings or Settings()
        self.read_only = read_only
        self.refresh_period = refresh_period
        self.min_refresh_gap = min_refresh_gap
        self.pool: AsyncConnectionPool | None = None
        self.db_changed: Signal[str] = Signal(self, "db-changed")  # a table name, or "*"
        self.group_changes: Signal[str] = Signal(self, "group-changes")  # "u:<ids>", "d:<ids>" or "*"
        self.db_state_signal: Signal[DatabaseState] = Signal(self, "db-state")
        self.db_state = DatabaseState(connected=False, error="connecting…", since=time.time())
        self._listener = ChangeListener(url, self._on_change, self._on_listener_state)
        self._pool_lock = asyncio.Lock()
        if read_only:
            self.sub_title = "READ-ONLY"

    # ---------------------------------------------------------------- lifecycle
    async def on_mount(self) -> None:
        self.run_worker(self._listener.run(), name="change-listener", group="db", exit_on_error=False)
        self.run_worker(self._open_pool(), name="open-pool", group="db", exit_on_error=False)
        await self.push_screen(DashboardScreen())

    async def _open_pool(self) -> None:
        async with self._pool_lock:
            try:
                self.pool = await open_pool(self.url, min_size=1, max_size=4, name="tgms-tui")
            except (psycopg.Error, OSError, PoolTimeout) as exc:  # bad URL etc.: stay up, show it
                self._set_db_state(False, self._describe(exc))

    async def on_unmount(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(timeout=1.0), timeout=2.0)

    # ---------------------------------------------------------------- live changes
    def _on_change(self, channel: str, payload: str) -> None:
        if channel == GROUPS_CHANNEL:
            self.group_changes.publish(payload)
        else:
            self.db_changed.publish(payload)

    @property
    def listening(self) -> bool:
        """True while change notifications arrive (the LISTEN connection is up)."""
        return self._listener.connected

    def _on_listener_state(self, connected: bool, error: str | None) -> None:
        if connected:
            outage = not self.db_state.connected and self.db_state.error != "connecting…"
            if outage and self.pool is not None:
                # Back after an outage: the pool's own reconnect backs off up to 10 s; a fresh pool
                # makes the screen live again as soon as the server answers.
                self.run_worker(self._replace_pool(), group="db", exit_on_error=False)
        else:
            self._set_db_state(False, error)

    async def _replace_pool(self) -> None:
        async with self._pool_lock:
            old = self.pool
            try:
                self.pool = await open_pool(self.url, min_size=1, max_size=4, name="tgms-tui")
            except (psycopg.Error, OSError, PoolTimeout) as exc:
                self._set_db_state(False, self._describe(exc))
                return
            if old is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(old.close(timeout=0.5), timeout=1.0)
        self.db_changed.publish("*")

    def _set_db_state(self, connected: bool, error: str | None = None) -> None:
        previous = self.db_state
        if previous.connected == connected and (connected or previous.error == error):
            return
        self.db_state = DatabaseState(connected, error, time.time())
        self.db_state_signal.publish(self.db_state)
        if connected and previous.error != "connecting…":
            self.notify("Database reachable again: live updates resumed.", title="Database", timeout=4)
        elif not connected and previous.connected:
            self.notify(f"Database unreachable: {error}. Retrying…", title="Database", severity="error", timeout=6)

    @staticmethod
    def _describe(exc: BaseException) -> str:
        text = redact(str(exc)).strip().splitlines()
        return text[0][:160] if text else type(exc).__name__

    # ---------------------------------------------------------------- database access
    async def run_db(self, fn: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """Run `fn(conn)` in one transaction on a pooled connection.

        Raises DatabaseUnavailable (never a psycopg error); a lost connection is also shown in the
        status bar until a later call succeeds.
        """
        pool = self.pool
        if pool is None:
            raise DatabaseUnavailable(self.db_state.error or "not connected yet")
        try:
            async with pool.connection(timeout=ACQUIRE_TIMEOUT) as conn:
                result = await fn(conn)
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, OSError) as exc:
            message = self._describe(exc)
            self._set_db_state(False, message)
            raise DatabaseUnavailable(message) from exc
        except psycopg.Error as exc:  # the statement failed; the connection is fine
            raise DatabaseUnavailable(self._describe(exc)) from exc
        self._set_db_state(True)
        return result

    async def attempt(self, fn: Callable[[AsyncConnection[Any]], Awaitable[T]], what: str) -> T | None:
        """`run_db` for user actions: on failure tell the operator what did not happen, return None."""
        try:
            return await self.run_db(fn)
        except DatabaseUnavailable as exc:
            self.notify(f"{what} failed: {exc}", severity="error", timeout=6)
            return None

    async def perform(self, fn: Callable[[AsyncConnection[Any]], Awaitable[object]], what: str) -> bool:
        """`attempt` for writes that return nothing: True when it was committed."""
        try:
            await self.run_db(fn)
        except DatabaseUnavailable as exc:
            self.notify(f"{what} failed: {exc}", severity="error", timeout=6)
            return False
        return True

    # ---------------------------------------------------------------- notices
    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        """Every notice (the app's, a screen's, a widget's: they all end here) is plain text.

        Notices quote titles, names and errors that come from Telegram or users; as markup, a title
        `[/]` would end the app and `[@click=app.quit]` would become a clickable action. So `markup`
        is ignored and control and bidi characters are made visible."""
        super().notify(
            fmt.plain(message, NOTICE_LIMIT, multiline=True),
            title=fmt.plain(title, 80),
            severity=severity,
            timeout=timeout,
            markup=False,
        )

    # ---------------------------------------------------------------- read-only
    def refuse_if_read_only(self, what: str) -> bool:
        """True (and says so) when a mutation was asked for in read-only mode."""
        if self.read_only:
            self.notify(f"Read-only mode: {what} is disabled.", severity="warning", timeout=4)
            return True
        return False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return is_allowed(self, action)

    def on_key(self, event: Key) -> None:
        # A hidden binding lets its key fall through to here: say why nothing happened.
        if self.read_only and event.key in READ_ONLY_KEYS:
            event.stop()
            self.refuse_if_read_only(READ_ONLY_KEYS[event.key].lower())

    # ---------------------------------------------------------------- global actions
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
