"""Durable update intake with group commit.

One INSERT + COMMIT per webhook request is bound by the commit (about a quarter of a bare route's
throughput). Here concurrent requests hand their update to `UpdateIntake.submit`, which parks them on a
future; writer tasks take everything queued so far and store it in ONE transaction:

1. INSERT INTO webhook_updates ... ON CONFLICT DO NOTHING RETURNING the keys that are new
   (the dedupe: a redelivered update finds its row, even long after its job finished);
2. one multi-row job insert (`queue.enqueue_many`) for the new ones;
3. link each webhook_updates row to its job.

Only after COMMIT returns are the futures resolved, so no request is answered 200 before its update is
durable; if anything fails every request of the batch gets an error (the server answers 503 and
Telegram redelivers; the dedupe makes that safe even when the commit did happen).

Keys are inserted in sorted order so that two writers (or two server processes) whose batches share
keys lock them in the same order and cannot deadlock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from tgms_tui.backend import queue

from .metrics import WebhookMetrics
from .updates import JOIN_REQUEST, metric_type

log = logging.getLogger(__name__)

JOIN_REQUEST_JOB = "tgms_process_join_request"
UPDATE_JOB = "process_telegram_update"
JOIN_REQUEST_PRIORITY = -10  # approvals are latency-critical (the user is waiting in the app)

SQL_INSERT_UPDATES = """
INSERT INTO webhook_updates (bot, update_id, update_type)
SELECT t.bot, t.update_id, t.update_type
  FROM unnest(%s::text[], %s::bigint[], %s::text[]) WITH ORDINALITY AS t(bot, update_id, update_type, n)
 ORDER BY t.n
ON CONFLICT (bot, update_id) DO NOTHING
RETURNING bot, update_id
"""

SQL_LINK_JOBS = """
UPDATE webhook_updates AS w SET job_id = j.job_id
  FROM jobs AS j
 WHERE j.job_id = ANY(%s::bigint[])
   AND w.bot = j.payload->>'bot' AND w.update_id = (j.payload->>'update_id')::bigint
"""


class IntakeUnavailable(Exception):
    """The update could not be stored now (database down, overloaded, stopping): answer 503."""


def job_for(bot: str, update_id: int, update_type: str, update: dict[str, Any]) -> queue.NewJob:
    """The job an update becomes. The payload format is a contract with the workers."""
    payload = {"bot": bot, "update_id": update_id, "update_type": update_type, "update": update}
    if update_type == JOIN_REQUEST:
        return queue.NewJob(JOIN_REQUEST_JOB, payload, priority=JOIN_REQUEST_PRIORITY)
    return queue.NewJob(UPDATE_JOB, payload)


@dataclass(slots=True)
class _Pending:
    bot: str
    update_id: int
    update_type: str
    update: dict[str, Any]
    future: asyncio.Future[bool] = field(repr=False)


class UpdateIntake:
    """Group-committing writer of webhook updates; `submit` returns True for a new update, False for
    a duplicate, and raises IntakeUnavailable when it could not be stored."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        metrics: WebhookMetrics,
        *,
        writers: int = 2,
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
        for item in self._pending:  # only if writers died: never leave a request hanging
            if not item.future.done():
                item.future.set_exception(IntakeUnavailable("server stopping"))
        self._pending.clear()

    async def submit(self, bot: str, update_id: int, update_type: str, update: dict[str, Any]) -> bool:
        if self._stopping:
            raise IntakeUnavailable("server stopping")
        if len(self._pending) >= self._max_pending:
            raise IntakeUnavailable("intake queue full")
        if self._down_until and time.monotonic() < self._down_until:
            # Just failed: answer at once instead of piling requests onto a dead database.
            raise IntakeUnavailable("database unavailable")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(bot, update_id, update_type, update, future))
        self._wake.set()
        return await future

    async def _writer(self) -> None:
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
                await self._store(batch)
            except Exception:  # _store resolves futures itself; this is a last line of defence
                log.exception("webhook intake writer failed")
                _fail_all(batch, IntakeUnavailable("internal error"))

    async def _store(self, batch: list[_Pending]) -> None:
        first: dict[tuple[str, int], _Pending] = {}
        for item in batch:
            first.setdefault((item.bot, item.update_id), item)
        keys = sorted(first)
        try:
            new = await self._commit(keys, first)
        except psycopg.OperationalError as exc:
            self._failed(batch, exc)
            return
        except PoolTimeout as exc:
            self._failed(batch, exc)
            return
        except psycopg.Error as exc:
            if len(keys) == 1:
                self._failed(batch, exc)
                return
            # Not the connection: some value the database refused. Store one by one so a single bad
            # update cannot take its whole batch down with it.
            log.warning("batch of %d refused (%s); storing updates one by one", len(keys), type(exc).__name__)
            new = set()
            for key in keys:
                try:
                    new |= await self._commit([key], first)
                except psycopg.Error as single_exc:
                    self._failed([i for i in batch if (i.bot, i.update_id) == key], single_exc)
        self._down_until = 0.0
        m = self._metrics
        m.batch_commits += 1
        m.batch_size.observe(len(batch))
        for item in batch:
            if item.future.done():
                continue
            key = (item.bot, item.update_id)
            is_new = key in new and first[key] is item
            if is_new:
                m.updates_received[(item.bot, metric_type(item.update_type))] += 1
                m.jobs_enqueued[JOIN_REQUEST_JOB if item.update_type == JOIN_REQUEST else UPDATE_JOB] += 1
            else:
                m.duplicates[item.bot] += 1
            item.future.set_result(is_new)

    async def _commit(self, keys: list[tuple[str, int]], first: dict[tuple[str, int], _Pending]) -> set[Any]:
        """Store `keys` in one transaction; the set of keys that were new. Retries once on a broken
        connection (e.g. after a PostgreSQL restart the pool still holds dead ones): safe, because a
        batch that did commit comes back as duplicates."""
        for attempt in (1, 2):
            try:
                return await self._transaction(keys, first)
            except psycopg.OperationalError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def _transaction(self, keys: list[tuple[str, int]], first: dict[tuple[str, int], _Pending]) -> set[Any]:
        async with self._pool.connection(timeout=self._connect_timeout) as conn, conn.transaction():
            await conn.execute("SELECT set_config('statement_timeout', %s, true)", (self._statement_timeout,))
            cur = await conn.execute(
                SQL_INSERT_UPDATES,
                ([k[0] for k in keys], [k[1] for k in keys], [first[k].update_type for k in keys]),
            )
            new = {(str(b), int(u)) for b, u in await cur.fetchall()}
            if new:
                jobs = [
                    job_for(k[0], k[1], first[k].update_type, first[k].update) for k in keys if k in new
                ]
                job_ids = await queue.enqueue_many(conn, jobs)
                await conn.execute(SQL_LINK_JOBS, (job_ids,))
        return new

    def _failed(self, batch: list[_Pending], exc: BaseException) -> None:
        self._metrics.batch_failures += 1
        self._down_until = time.monotonic() + self._cooldown
        log.warning("could not store %d update(s): %s: %s", len(batch), type(exc).__name__, str(exc).strip()[:200])
        _fail_all(batch, IntakeUnavailable("database unavailable"))


def _fail_all(batch: list[_Pending], exc: Exception) -> None:
    for item in batch:
        if not item.future.done():
            item.future.set_exception(exc)
