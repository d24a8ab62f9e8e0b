"""Live change feed: LISTEN on the `tgms_changes` channel and report which tables changed.

Triggers in 001_core.sql send one NOTIFY per statement with the table name as payload, but only while
some listener is registered in `change_listeners` (sql/024_change_listeners.sql: a NOTIFY costs every
listening session, so nothing is sent when no control center is open). The listener registers its
session after LISTEN, clears rows of sessions that are gone, and removes its own row when it stops. It
holds a dedicated autocommit connection (LISTEN does not survive a pooled connection being handed to
someone else), reconnects for ever with a capped back-off, and reports "*" (everything may have
changed) after each (re)connect because notifications sent while it was away are lost.
Plain asyncio and callbacks: no Textual here, so it can be tested and reused headless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

import psycopg

from .redaction import redact

log = logging.getLogger(__name__)

CHANGES_CHANNEL = "tgms_changes"  # payload: the table name (001_core.sql)
GROUPS_CHANNEL = "tgms_groups"  # payload: "u:<ids>" / "d:<ids>" / "*" (005_tui_groups.sql)
ALL_TABLES = "*"
# After LISTEN: this session is a listener; rows of sessions that ended without removing theirs go.
SQL_REGISTER = """
WITH gone AS (
    DELETE FROM change_listeners WHERE pid NOT IN (SELECT pid FROM pg_stat_activity)
)
INSERT INTO change_listeners (pid) VALUES (pg_backend_pid()) ON CONFLICT (pid) DO NOTHING
"""
SQL_UNREGISTER = "DELETE FROM change_listeners WHERE pid = pg_backend_pid()"
KEEPALIVE_SECONDS = 10.0


class ChangeListener:
    """Calls `on_change(channel, payload)` for each NOTIFY and `on_state(connected, error)` on every
    transition; after each (re)connect `on_change(CHANGES_CHANNEL, "*")`.

    Callbacks run on the listener's event loop, so a Textual app can update widgets from them.
    """

    def __init__(
        self,
        url: str,
        on_change: Callable[[str, str], None],
        on_state: Callable[[bool, str | None], None] = lambda ok, err: None,
        *,
        channels: Iterable[str] = (CHANGES_CHANNEL, GROUPS_CHANNEL),
        max_backoff: float = 2.0,
    ) -> None:
        self.url = url
        self.on_change = on_change
        self.on_state = on_state
        self.channels = tuple(channels)
        self.max_backoff = max_backoff
        self.connected = False

    def _set_state(self, connected: bool, error: str | None) -> None:
        if connected != self.connected or error is not None:
            self.connected = connected
            self.on_state(connected, error)

    async def run(self) -> None:
        """Listen until cancelled; never raises a database error."""
        failures = 0
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)
            except (psycopg.Error, OSError) as exc:
                failures += 1
                self._set_state(False, redact(str(exc)).strip() or type(exc).__name__)
                await asyncio.sleep(min(self.max_backoff, 0.1 * 2**failures))
                continue
            try:
                for channel in self.channels:
                    await conn.execute(f"LISTEN {channel}")
                try:
                    await conn.execute(SQL_REGISTER)
                except psycopg.errors.InsufficientPrivilege as exc:
                    # Live notices then come only while another listener is registered; the
                    # periodic refreshes still run.
                    log.warning("cannot register as a change listener: %s", redact(str(exc)).strip())
                failures = 0
                self._set_state(True, None)
                self.on_change(CHANGES_CHANNEL, ALL_TABLES)
                await self._pump(conn)
            except (psycopg.Error, OSError) as exc:
                failures += 1
                self._set_state(False, redact(str(exc)).strip() or type(exc).__name__)
                log.debug("change listener lost its connection: %s", exc)
                await asyncio.sleep(min(self.max_backoff, 0.1 * 2**failures))
            finally:
                with contextlib.suppress(Exception):
                    if not conn.closed:
                        await conn.execute(SQL_UNREGISTER)
                with contextlib.suppress(Exception):
                    await conn.close()

    async def _pump(self, conn: psycopg.AsyncConnection[object]) -> None:
        # notifies(timeout=) ends the generator after a quiet spell; a SELECT 1 then proves the
        # connection is still alive (a dead server is otherwise only noticed by the kernel much later).
        while True:
            async for note in conn.notifies(timeout=KEEPALIVE_SECONDS):
                self.on_change(note.channel, note.payload)
            await conn.execute("SELECT 1")


class RefreshScheduler:
    """Coalesces change notices into throttled refreshes, with a periodic fallback.

    `mark(...)` records what is stale and wakes the loop. The loop refreshes at once when idle but
    never starts two refreshes less than `min_gap` apart, so a burst of NOTIFYs (a broadcast writing
    sent_messages rows) costs one refresh per `min_gap`, not one per statement. Every `period`
    seconds everything is marked stale anyway: ages tick, heartbeats go stale, and a notice lost
    while the listener reconnected is caught up. `refresh(stale)` returns False when it could not
    reach the database; the stale set is kept and retried with a capped back-off.
    """

    def __init__(
        self,
        refresh: Callable[[frozenset[str]], Awaitable[bool]],
        everything: Iterable[str],
        *,
        min_gap: float = 0.15,
        period: float = 2.0,
        max_backoff: float = 2.0,
        periodic: Callable[[int], Iterable[str]] | None = None,
    ) -> None:
        self._refresh = refresh
        self.everything = frozenset(everything)
        # What each periodic tick marks stale (tick number -> panes); everything by default.
        self._periodic = periodic or (lambda _tick: self.everything)
        self._ticks = 0
        self.min_gap = min_gap
        self.period = period
        self.max_backoff = max_backoff
        self._stale: set[str] = set(self.everything)
        self._wake = asyncio.Event()
        self._wake.set()
        self._held = False
        self._last_start = -1e9
        self.refreshes = 0

    @property
    def held(self) -> bool:
        return self._held

    def mark(self, *panes: str) -> None:
        self._stale.update(panes)
        self._wake.set()

    def mark_all(self) -> None:
        self.mark(*self.everything)

    def hold(self, held: bool) -> None:
        """While held (paused, or the view is hidden) stale marks accumulate without refreshing."""
        self._held = held
        if not held:
            self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.period)
            except TimeoutError:
                self._ticks += 1
                self._stale.update(self._periodic(self._ticks))
            self._wake.clear()
            if self._held or not self._stale:
                continue
            gap = self._last_start + self.min_gap - loop.time()
            if gap > 0:
                await asyncio.sleep(gap)  # marks arriving meanwhile join this refresh
            if self._held:
                continue
            stale, self._stale = frozenset(self._stale), set()
            self._last_start = loop.time()
            try:
                ok = await self._refresh(stale)
            except Exception:  # a bug in one refresh must not end live updates for good
                log.exception("refresh failed")
                ok = False
            self.refreshes += 1
            if ok:
                failures = 0
                continue
            self._stale.update(stale)
            failures += 1
            await asyncio.sleep(min(self.max_backoff, 0.25 * 2 ** (failures - 1)))
            self._wake.set()
