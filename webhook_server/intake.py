"""Durable update intake with group commit.

One INSERT + COMMIT per webhook request is bound by the commit (about a quarter of a bare route's
throughput). Here concurrent requests hand their update to `UpdateIntake.submit`, which parks them on a
future; writer tasks take everything queued so far and store it with ONE statement, run in autocommit
mode, so the batch is one transaction and one round trip:

1. INSERT INTO webhook_updates ... ON CONFLICT DO NOTHING RETURNING the keys that are new
   (the dedupe: a redelivered update finds its row, even long after its job finished), each new row
   taking its job id from the jobs sequence;
2. one multi-row INSERT INTO jobs for exactly those rows (payload built by PostgreSQL from the body
   text, so Python never re-serialises an update), except the updates whose whole effect is member
   activity (a join, a chat_member change, a message in a group): the same statement records that
   activity and makes no job for them (tgms_tui/backend/webhook_updates.py says which).

Only when that statement has returned, i.e. committed, are the futures resolved: no request is answered
200 before its update is durable. If it fails every request of the batch gets an error (the server
answers 503 and Telegram redelivers; the dedupe makes that safe even when the commit did happen).

Why not BEGIN; INSERT; `queue.enqueue_many`; UPDATE; COMMIT: that is five round trips per batch, each
one waiting for an event loop busy parsing HTTP, and measured here it stayed far below the target. The
job row written here has the same columns and defaults `queue.enqueue` would give it (pool, run_at,
max_retries, status; the NOTIFY triggers fire as for any insert).

Keys are inserted in sorted order so that two writers (or two server processes) whose batches share
keys lock them in the same order and cannot deadlock.

One writer is the default, measured: every batch inserts jobs, whose triggers NOTIFY the workers, and
PostgreSQL serialises the commits of notifying transactions (a global lock held through the WAL
flush), so a second writer only waits behind the first; under load one writer simply makes bigger
batches.

The intake owns its pool, configured on first use: autocommit, and a statement timeout (a stuck
database turns into 503s instead of hanging requests).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tgms_tui.backend.webhook_updates import (
    STORE_BATCH_STATEMENT,
    batch_text,
    job_type_for,
    payload_text,
    prepare_store_batch,
)

from .metrics import WebhookMetrics
from .prepared_call import run_prepared
from .updates import ParsedUpdate, UpdateRejected, metric_type, parse_update

log = logging.getLogger(__name__)


class IntakeUnavailable(Exception):
    """The update could not be stored now (database down, overloaded, stopping): answer 503."""


@dataclass(slots=True)
class _Pending:
    bot: str
    update: ParsedUpdate  # replaced by its checked form if PostgreSQL refused the unchecked one
    future: asyncio.Future[bool] = field(repr=False)

    @property
    def key(self) -> tuple[str, int]:
        return (self.bot, self.update.update_id)


Key = tuple[str, int]


@dataclass(slots=True)
class _Connection:
    """The connection a writer holds between batches (None until taken, or after it broke)."""

    conn: psycopg.AsyncConnection[Any] | None = None


class UpdateIntake:
    """Group-committing writer of webhook updates; `submit` returns True for a new update, False for
    a duplicate, raises IntakeUnavailable when it could not be stored, and UpdateRejected when
    PostgreSQL refused an unchecked body that then proved not to be an update."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        metrics: WebhookMetrics,
        *,
        writers: int = 1,
        max_batch: int = 500,
        max_pending: int = 20_000,
        connect_timeout: float = 2.0,
        statement_timeout_ms: int = 5000,
        cooldown: float = 0.5,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._writers = writers
        self._max_batch = max_batch
        self._max_pending = max_pending
        self._connect_timeout = connect_timeout
        self._statement_timeout = f"{int(statement_timeout_ms)}ms"
        self._cooldown = cooldown
        self._configured: weakref.WeakSet[psycopg.AsyncConnection[Any]] = weakref.WeakSet()
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._down_until = 0.0

    async def start(self) -> None:
        self._stopping = False
        self._tasks = [asyncio.create_task(self._writer(), name=f"webhook-writer-{n}") for n in range(self._writers)]

    async def stop(self) -> None:
        """Store what is queued, then stop the writers."""
        self._stopping = True
        self._wake.set()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        _fail_all(self._pending, IntakeUnavailable("server stopping"))  # only if the writers died
        self._pending.clear()

    async def submit(self, bot: str, update: ParsedUpdate) -> bool:
        if self._stopping:
            raise IntakeUnavailable("server stopping")
        if len(self._pending) >= self._max_pending:
            raise IntakeUnavailable("intake queue full")
        if self._down_until and time.monotonic() < self._down_until:
            # Just failed: answer at once instead of piling requests onto a dead database.
            raise IntakeUnavailable("database unavailable")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(bot, update, future))
        self._wake.set()
        return await future

    async def _writer(self) -> None:
        # Each writer keeps one connection between batches: taking it from the pool and giving it
        # back every time costs more than the statement itself at low load.
        slot = _Connection()
        try:
            while True:
                if not self._pending:
                    if self._stopping:
                        return
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    await self._store(batch, slot)
                except Exception:  # _store resolves futures itself; this is the last line of defence
                    log.exception("webhook intake writer failed")
                    _fail_all(batch, IntakeUnavailable("internal error"))
                    await self._release(slot)
        finally:
            await self._release(slot)

    async def _release(self, slot: _Connection) -> None:
        """Give the slot's connection back; the pool discards a broken one and opens a fresh one."""
        conn, slot.conn = slot.conn, None
        if conn is not None:
            try:
                await self._pool.putconn(conn)
            except Exception:  # a pool that is closing: nothing more to do with this connection
                log.debug("could not return a connection to the pool", exc_info=True)

    async def _store(self, batch: list[_Pending], slot: _Connection) -> None:
        """Store a batch and resolve every future of it."""
        first: dict[Key, _Pending] = {}
        for item in batch:
            first.setdefault(item.key, item)
        keys = sorted(first)
        try:
            new, without_job = await self._commit(keys, first, slot)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            self._failed(batch, exc)
            return
        except psycopg.Error as exc:
            if any(not item.update.checked for item in batch):
                # PostgreSQL refused some body only its shape was checked for: decode those now,
                # answer the ones that are not updates 400, and store the rest again.
                if kept := _recheck(batch):
                    await self._store(kept, slot)
                return
            if len(keys) == 1:
                self._failed(batch, exc, database_down=False)
                return
            # Not the connection: some value the database refused. Store one by one so a single bad
            # update cannot take its whole batch down with it.
            log.warning("batch of %d refused (%s); storing updates one by one", len(keys), type(exc).__name__)
            new, without_job = set(), set()
            for key in keys:
                try:
                    one, none = await self._commit([key], first, slot)
                    new |= one
                    without_job |= none
                except (psycopg.Error, PoolTimeout) as single_exc:
                    down = isinstance(single_exc, psycopg.OperationalError | PoolTimeout)
                    self._failed([i for i in batch if i.key == key], single_exc, database_down=down)
        self._down_until = 0.0
        m = self._metrics
        m.batch_commits += 1
        m.batch_size.observe(len(batch))
        for item in batch:
            if item.future.done():  # failed above, or its request was cancelled
                continue
            is_new = item.key in new and first[item.key] is item
            if is_new:
                update_type = item.update.update_type
                m.updates_received[(item.bot, metric_type(update_type))] += 1
                if item.key in without_job:
                    m.activity_only[item.bot] += 1
                else:
                    m.jobs_enqueued[job_type_for(update_type)] += 1
            else:
                m.duplicates[item.bot] += 1
            item.future.set_result(is_new)

    async def _commit(
        self, keys: list[Key], first: dict[Key, _Pending], slot: _Connection
    ) -> tuple[set[Key], set[Key]]:
        """Store `keys` with one statement; the keys that were new, and those of them that made no
        job (member activity only). Retries once on a broken
        connection (after a PostgreSQL restart the writer still holds a dead one): safe, because a
        batch that did commit comes back as duplicates."""
        updates = [(key, first[key].update) for key in keys]
        param = batch_text(payload_text(bot, uid, u.update_type, u.json_text) for (bot, uid), u in updates)
        for attempt in (1, 2):
            if slot.conn is None:
                slot.conn = await self._pool.getconn(timeout=self._connect_timeout)
            conn = slot.conn
            try:
                if conn not in self._configured:
                    await self._configure(conn)
                result = await run_prepared(conn, STORE_BATCH_STATEMENT, [param.encode()])
                old, no_job = _positions(result.get_value(0, 0)), _positions(result.get_value(0, 1))
                new = {key for n, key in enumerate(keys, 1) if n not in old}
                return new, {key for n, key in enumerate(keys, 1) if n in no_job and key in new}
            except psycopg.OperationalError:
                await self._release(slot)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _configure(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.set_autocommit(True)  # the batch statement is its own transaction
        await conn.execute("SELECT set_config('statement_timeout', %s, false)", (self._statement_timeout,))
        await prepare_store_batch(conn)
        self._configured.add(conn)

    def _failed(self, batch: list[_Pending], exc: BaseException, *, database_down: bool = True) -> None:
        self._metrics.batch_failures += 1
        if database_down:  # not for one refused update: the others must keep flowing
            self._down_until = time.monotonic() + self._cooldown
        log.warning("could not store %d update(s): %s: %s", len(batch), type(exc).__name__, str(exc).strip()[:200])
        _fail_all(batch, IntakeUnavailable("database unavailable"))


def _positions(value: bytes | None) -> set[int]:
    """The positions in an int[] result as text (b"{2,5}", or None for none)."""
    return {int(n) for n in value[1:-1].split(b",")} if value else set()


def _recheck(batch: list[_Pending]) -> list[_Pending]:
    """Decode the bodies PostgreSQL has not accepted yet: those that are not updates are answered
    (UpdateRejected: 400); the rest come back checked, ready to be stored again."""
    kept = []
    for item in batch:
        if item.update.checked:
            kept.append(item)
            continue
        try:
            item.update = parse_update(item.update.json_text.encode(), trust_shape=False)
        except UpdateRejected as exc:
            if not item.future.done():
                item.future.set_exception(exc)
            continue
        kept.append(item)
    return kept


def _fail_all(batch: list[_Pending], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)
