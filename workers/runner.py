"""The worker loop: claim → dispatch → complete/retry, with heartbeats, leases and graceful stop.

One `Worker` serves one pool ('main' or 'tgms'). It claims due jobs in batches up to its free
concurrency, runs each handler as an asyncio task, and batches completions (whatever finished while
the previous completion commit was in flight goes in the next one). It sleeps on LISTEN/NOTIFY from a
dedicated autocommit connection, with a slow poll and the next scheduled `run_at` as fallbacks.

A heartbeat task keeps `bot_health` current, extends the leases of in-flight jobs (so a live worker
never loses a job to another), reaps expired leases of dead workers, and enqueues periodic jobs.
Database errors anywhere are logged and retried: PostgreSQL may restart under us (a handler that
loses its connection runs again without a retry being counted).

Stuck work never holds a job for ever:

- Each job type has a time limit (`WorkerOptions.time_limits`, overridden by TGMS_JOB_TIMEOUTS). The
  handler is cancelled when it runs out; that counts a retry (with backoff) and the job ends 'failed'
  after max_retries with "timed out after N s". Inside a handler, `time_left()` says how long remains,
  so a resumable handler (the broadcast sender) can end its slice of work first.
- A job whose lease this worker no longer holds (re-queued by a reaper, cancelled by an operator)
  has its handler cancelled at once: on the `cancel:<job_id>` notification, else at the next
  heartbeat that fails to extend the lease. Nothing is written for it: the job is not ours any more.
  A worker cut off from the database (a partition) cannot learn that: it stops a handler itself once
  the lease it last obtained has run out by its own clock (measured from before the claim or
  extension was sent, so never later than the database's), the moment another worker may take it.
- A handler that blocks the event loop (a synchronous call) stops every timer, the heartbeat
  included. A watchdog thread notices the loop's silence, records the stall in `bot_health` (status
  'stalled', the job and the code that blocks) and, if the loop stays blocked for `stall_exit_seconds`,
  exits the process (status 70) so a supervisor restarts it. Its leases run out meanwhile, so other
  workers take its jobs, each such lapse counting a retry: a job that blocks every worker ends
  'failed' after max_retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import health, queue
from tgms_tui.backend.config import Settings
from tgms_tui.backend.db import open_pool
from tgms_tui.backend.queue import Backoff, Job, Pool
from tgms_tui.backend.redaction import redact

from . import durable, task_dump
from .metrics import METRICS
from .services import Services

log = logging.getLogger(__name__)

BOT_NAMES: dict[Pool, str] = {"main": "main_worker", "tgms": "tgms_worker"}
# The time limit of a job type that declares none (every registered handler declares its own).
DEFAULT_TIME_LIMIT = 300.0
# The watch's session advisory lock, one per pool (two-key form: the first key says "TGMS watch").
WATCH_LOCK_KEYS: dict[Pool, tuple[int, int]] = {"main": (0x7467_6D73, 1), "tgms": (0x7467_6D73, 2)}
# A watching worker that stays full this long (or stops) hands the watch on. A full worker still claims
# as soon as a slot frees, so only longer spells need another worker; a shorter linger passed the
# watch back and forth under load (a lock, LISTEN and claim each time).
WATCH_HANDOFF_SECONDS = 0.5
# A worker waiting for the watch tries its lock again on the holder's handoff notice, or this often (a
# holder that died sends none). It never waits inside pg_advisory_lock: a statement that waits holds a
# snapshot, and a snapshot held for hours stops VACUUM from removing any dead row of the database
# (the queue's hot table bloats and every claim slows down).
WATCH_RETRY_SECONDS = 2.0
# A worker that stopped running jobs keeps listening for cancel notices this long before UNLISTEN.
CANCEL_LISTEN_LINGER = 5.0
# How often at most a worker tells the control center that jobs changed.
ANNOUNCE_SECONDS = 1.0
# The exit status of a worker whose event loop stayed blocked (EX_SOFTWARE): a supervisor restarts it.
EXIT_LOOP_STALLED = 70

# The running job's deadline (time.monotonic()), set in each job's own task: see time_left().
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("tgms_job_deadline", default=None)


def time_left() -> float | None:
    """Seconds until the running job's time limit cancels its handler; None outside a handler."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


class Snooze(Exception):
    """Raised by a handler to run the job again in `seconds` without counting a retry (429)."""

    def __init__(self, seconds: float, reason: str | None = None) -> None:
        super().__init__(reason or f"snoozed for {seconds:.1f}s")
        self.seconds = seconds
        self.reason = reason


class PermanentFailure(Exception):
    """Raised by a handler when retrying cannot help: the job fails at once."""


Conn = psycopg.AsyncConnection[Any]


@dataclass
class JobContext:
    """What a handler gets besides its job: the database, settings and who is running it."""

    db: AsyncConnectionPool
    settings: Settings
    worker_id: str
    pool: Pool
    services: Services = field(default_factory=Services)
    # Jobs whose handler completed them itself (`complete`): the runner writes nothing more for them.
    completed: set[int] = field(default_factory=set, repr=False)

    def completion(self, job: Job) -> queue.Completion:
        """`job`'s completion, for a repository statement that takes one (e.g. `join_requests.finish`):
        the handler's last write and the job's completion in one statement. The runner then writes no
        completion of its own once the handler returns; a handler must not swallow that statement's
        error (if it raises, the runner records a failure, a no-op once the job is done)."""
        self.completed.add(job.job_id)
        return queue.Completion(job.job_id, self.worker_id)

    async def complete(self, conn: Conn, job: Job) -> None:
        """Mark `job` done on `conn`, in the caller's transaction: the job's outcome commits with the
        handler's own writes, and the runner writes no completion of its own afterwards. Only while
        this worker holds the job's lease (otherwise nothing changes, as with any completion). The
        handler must return normally after the transaction commits; if it raises instead, the
        runner records a failure, which the lease check makes a no-op once the job is done."""
        await queue.complete_in(conn, job.job_id, self.worker_id)
        self.completed.add(job.job_id)

    @contextlib.asynccontextmanager
    async def finishing(self, job: Job, db: AsyncConnectionPool | None = None) -> AsyncIterator[Conn]:
        """A connection for the handler's last writes (from `db`, default the handlers' pool): one
        transaction that also completes `job`, sent as one pipeline, so the writes and the
        completion cost one round trip and one commit. Statements run in it must not read results
        (a read forces a round trip of its own, which is still correct, only slower)."""
        async with (db or self.db).connection() as conn, conn.pipeline(), conn.transaction():
            yield conn
            await self.complete(conn, job)


Handler = Callable[[JobContext, Job], Awaitable[None]]
T = TypeVar("T")


async def uninterruptible(step: Awaitable[T]) -> T:
    """Await `step` to its end even if our task is cancelled meanwhile (time limit, operator cancel,
    stop), then re-raise the cancellation: for work that must not be cut in two (a ban and its
    unban). Keep such steps short: the cancellation waits for them."""
    task = asyncio.ensure_future(step)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


# SQLSTATEs of a server that went away: connection exceptions (class 08) and an administrator's or a
# crash's shutdown, or a server still starting (57P01-57P03). Client-side losses carry no SQLSTATE.
_GONE_STATES = ("08", "57P01", "57P02", "57P03")
RECONNECT_RETRY_SECONDS = 1.0


def connection_lost(exc: BaseException) -> bool:
    """Whether `exc` means the database connection was lost rather than a statement failing (a
    cancelled or timed-out statement, a constraint, a bad query: those count as the job's failure)."""
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith(_GONE_STATES)


async def _drop_dead_connections(db: AsyncConnectionPool) -> None:
    """Check the pool's idle connections once, dropping the ones the server no longer serves."""
    with contextlib.suppress(Exception):
        await db.check()


# The stop reason of a handler cancelled by its time limit (the other reasons are only logged).
TIME_LIMIT = "time limit"
LEASE_LAPSED = "lease lapsed: no heartbeat reached the database for a whole lease"


@dataclass
class _Run:
    """One claimed job in this worker: its task, its time limit, and why the runner stopped it."""

    job: Job
    limit: float
    deadline: float  # time.monotonic() when the time limit runs out
    task: asyncio.Task[None] | None = None
    stop_reason: str | None = None  # why the runner cancelled the handler: TIME_LIMIT, lease lost, cancelled
    handler_done: bool = False  # the handler returned or raised: only its outcome is left to write
    # time.monotonic() by which the lease the database holds for us has surely run out, unless a
    # heartbeat extends it: measured from before the claim / extension was sent.
    lease_until: float = float("inf")


@dataclass(frozen=True)
class PeriodicJob:
    """A job enqueued once per `every_seconds` across all workers (dedupe key per period)."""

    job_type: str
    every_seconds: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerOptions:
    concurrency: int = 16
    batch_size: int = 100
    lease_seconds: float = 60.0
    heartbeat_seconds: float = 5.0
    poll_seconds: float = 5.0
    grace_seconds: float = 20.0
    # Seconds to let jobs gather after an idle worker is woken, before it claims them, and after a
    # handler finishes, before its completion is written: one claim and one completion for several
    # jobs. For pools whose jobs are not latency-critical (the main pool's updates); 0 = at once.
    batch_delay_seconds: float = 0.0
    backoff: Backoff = field(default_factory=Backoff)
    periodic: tuple[PeriodicJob, ...] = ()
    # Seconds per job type (the handlers' defaults: workers/registry.py); TGMS_JOB_TIMEOUTS wins.
    time_limits: Mapping[str, float] = field(default_factory=dict)
    default_time_limit: float = DEFAULT_TIME_LIMIT
    # The watchdog: a loop silent this long is reported (default: 10 s, or half a lease if shorter) ...
    stall_report_seconds: float | None = None
    # ... and this long ends the process with EXIT_LOOP_STALLED (default: three leases).
    stall_exit_seconds: float | None = None

    def time_limit(self, job_type: str, overrides: Mapping[str, float]) -> float:
        return overrides.get(job_type) or self.time_limits.get(job_type) or self.default_time_limit

    def stall_thresholds(self) -> tuple[float, float]:
        report = self.stall_report_seconds or min(10.0, self.lease_seconds / 2)
        exit_after = self.stall_exit_seconds or 3 * self.lease_seconds
        return report, max(report, exit_after)


class Worker:
    """Runs the handlers of one pool until `stop()` (or SIGTERM/SIGINT via `run_forever`)."""

    def __init__(
        self,
        url: str,
        pool: Pool,
        handlers: Mapping[str, Handler],
        settings: Settings,
        options: WorkerOptions | None = None,
        *,
        bot_name: str | None = None,
        services: Services | None = None,
    ) -> None:
        self.url = url
        self.pool: Pool = pool
        self.handlers = dict(handlers)
        self.settings = settings
        self.options = options or WorkerOptions(
            concurrency=settings.worker_concurrency, lease_seconds=settings.lease_seconds
        )
        self.bot_name = bot_name or BOT_NAMES[pool]
        self.worker_id = f"{self.bot_name}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.services = services or Services()
        self.jobs_done = 0
        self.jobs_failed = 0
        self.last_error: str | None = None
        self.last_activity: float | None = None
        self._db: AsyncConnectionPool | None = None
        self._inflight: dict[int, _Run] = {}
        self._pool_check: asyncio.Task[None] | None = None
        self._to_complete: list[int] = []
        self._completion_wanted = asyncio.Event()
        self._completion_lock = asyncio.Lock()  # a batch taken for writing is never cancelled mid-write
        self._wakeup = asyncio.Event()  # jobs may be due now: claim
        self._replan = asyncio.Event()  # the idle sleep's end moved earlier: no claim needed
        self._due_at: float | None = None  # monotonic time the next scheduled job is due, if known
        self._plan_known = False  # False: ask the database (start, poll, a due time that passed)
        self._slot_free = asyncio.Event()
        self._stopping = asyncio.Event()
        # The watch (see _watch): wanted while this worker can take more jobs.
        self._watch_wanted = asyncio.Event()
        self._watch_unwanted = asyncio.Event()
        self.watching = False
        self._cancel_listen_wanted = asyncio.Event()
        self._cancel_listen_unwanted = asyncio.Event()
        self._jobs_changed = False  # since the last announcement on the control center's channel
        self._status = "starting"
        # The watchdog: the loop's last sign of life (time.monotonic()), the loop's thread, its stop.
        self._loop_beat = time.monotonic()
        self._loop_thread_id: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog_stop = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def stop(self) -> None:
        """Stop claiming; in-flight jobs get `grace_seconds` to finish, the rest are released."""
        self._stopping.set()
        self._wakeup.set()
        self._slot_free.set()
        self._update_watch()

    async def run(self) -> None:
        opts = self.options
        # The runner's own statements each stand alone: an autocommit pool saves the COMMIT round
        # trip on every claim and completion. Handlers get a separate, transactional pool.
        # The queue's own bookkeeping (claims, completions, retries, leases, health) does not wait for
        # its WAL flush: a claim is on every job's critical path, and a PostgreSQL crash that loses the
        # last ~200 ms of it only puts jobs back as a dead worker would (the lease runs out, the job
        # runs again: handlers are idempotent). Handlers' own writes stay synchronous.
        self._db = await open_pool(
            self.url, min_size=1, max_size=4, name=f"{self.worker_id}:queue", autocommit=True, wait_for_flush=False
        )
        handler_db = await open_pool(
            self.url, min_size=1, max_size=max(4, min(opts.concurrency, 20) + 2), name=self.worker_id
        )
        ctx = JobContext(handler_db, self.settings, self.worker_id, self.pool, self.services)
        background = [
            asyncio.create_task(self._listen(), name="listen"),
            asyncio.create_task(self._watch(), name="watch"),
            asyncio.create_task(self._announce_changes(), name="announce"),
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._completer(), name="completer"),
            asyncio.create_task(self._loop_beats(), name="loop-beat"),
            asyncio.create_task(self._enforce_time_limits(), name="time-limits"),
        ]
        watchdog = self._start_watchdog()
        self._update_watch()
        log.info("worker %s serving pool %r (concurrency %d)", self.worker_id, self.pool, opts.concurrency)
        self._status = "running"
        try:
            await self._claim_loop(ctx)
            self._status = "stopping"
            await self._drain()
        finally:
            async with self._completion_lock:  # let a completion write under way finish first
                for task in background:
                    task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            self._watchdog_stop.set()
            watchdog.join(timeout=2.0)
            await self._flush_completions()
            self._status = "stopped"
            await self._write(self._upsert_health, within=1.0, what="final health status")
            await self._db.close()
            await handler_db.close()
            log.info("worker %s stopped (done %d, failed %d)", self.worker_id, self.jobs_done, self.jobs_failed)

    async def run_forever(self) -> None:
        """`run()` with SIGTERM/SIGINT mapped to a graceful stop (second signal: stop waiting)."""
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                log.info("stopping: finishing in-flight jobs (signal again to stop at once)")
                self.stop()
            else:
                self.options.grace_seconds = 0
                for run in list(self._inflight.values()):
                    if run.task is not None:
                        run.task.cancel()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        loop.add_signal_handler(signal.SIGUSR1, self.log_tasks)
        try:
            await self.run()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                loop.remove_signal_handler(sig)

    def log_tasks(self) -> None:
        """Log every asyncio task and where it waits (SIGUSR1; workers/task_dump.py); a handler's task
        is named by its job."""
        labels = {
            run.task: f"job {job_id} ({run.job.job_type}, {time.monotonic() - run.deadline + run.limit:.1f} s)"
            for job_id, run in list(self._inflight.items())
            if run.task is not None
        }
        log.warning("task dump of %s: %s", self.worker_id, task_dump.describe_tasks(labels))

    # ------------------------------------------------------------------ claiming
    async def _claim_loop(self, ctx: JobContext) -> None:
        opts = self.options
        failures = 0
        while not self._stopping.is_set():
            free = opts.concurrency - len(self._inflight)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            want = min(free, opts.batch_size)
            self._wakeup.clear()  # a NOTIFY arriving during the claim sets it again: no lost wake-up
            try:
                assert self._db is not None
                asked = time.monotonic()
                async with self._db.connection() as conn:
                    jobs = await queue.claim_batch(conn, self.pool, self.worker_id, want, opts.lease_seconds)
                failures = 0
            except (psycopg.Error, OSError) as exc:
                failures += 1
                await self._note_db_error("claim", exc, failures)
                continue
            for job in jobs:
                METRICS.job_claimed(job.job_type)
                self._start_run(ctx, job, asked + opts.lease_seconds)
            if len(jobs) < want:
                await self._idle_wait()
                if opts.batch_delay_seconds > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), opts.batch_delay_seconds)

    async def _idle_wait(self) -> None:
        """Sleep until a NOTIFY, the next scheduled job, or the poll. The next scheduled job is asked
        of the database only when the plan is not known: a worker woken for a job another worker took
        (every job, when a pool has several workers) goes back to sleep without a query."""
        if self._wakeup.is_set():  # work arrived while we were claiming: no need to plan a sleep
            return
        now = time.monotonic()
        if self._due_at is not None and self._due_at <= now:
            self._plan_known = False  # that job was due and is gone (or our clock is ahead): re-plan
        if not self._plan_known:
            # Planned afresh, but a `_plan` made while the query runs (a handler snoozing or failing
            # its job now) is kept: the query may have read the database before that job's write.
            self._due_at = None
            try:
                assert self._db is not None
                async with self._db.connection() as conn:
                    due_in = await queue.seconds_until_next(conn, self.pool)
                if due_in is not None:
                    self._plan(due_in)  # the earlier of the two
                self._plan_known = True
            except (psycopg.Error, OSError):
                self._due_at = now  # claim again at once: the claim loop reports database trouble
        self._replan.clear()
        while not self._wakeup.is_set():
            timeout = self.options.poll_seconds
            if self._due_at is not None:
                timeout = max(0.0, min(timeout, self._due_at - time.monotonic()))
            if timeout <= 0:
                return
            woken = asyncio.ensure_future(self._wakeup.wait())
            replanned = asyncio.ensure_future(self._replan.wait())
            done, _ = await asyncio.wait((woken, replanned), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            replanned.cancel()
            if not done:  # the poll or the planned time: claim, then ask the database afresh
                self._plan_known = False
                return
            self._replan.clear()

    def _plan(self, seconds: float) -> None:
        """A job of this pool becomes due in `seconds`: make sure the idle sleep ends by then."""
        due = time.monotonic() + max(0.0, seconds)
        if self._due_at is None or due < self._due_at:
            self._due_at = due
            self._replan.set()

    async def _note_db_error(self, what: str, exc: BaseException, failures: int) -> None:
        self.last_error = redact(f"database error during {what}: {exc}")[:500]
        delay = min(5.0, 0.2 * 2 ** min(failures, 5))
        log.warning("%s; retrying in %.1fs", self.last_error, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    # ------------------------------------------------------------------ running one job
    def _start_run(self, ctx: JobContext, job: Job, lease_until: float = float("inf")) -> None:
        stale = self._inflight.get(job.job_id)
        if stale is not None:  # our own earlier run lost the lease (a blocked loop) and we got it back
            self._stop_run(stale, "lease lost: the job was re-queued and claimed again")
        limit = self.options.time_limit(job.job_type, self.settings.job_timeouts)
        run = _Run(job, limit, time.monotonic() + limit, lease_until=lease_until)
        run.task = asyncio.create_task(self._execute(ctx, run))
        self._inflight[job.job_id] = run
        self._jobs_changed = True
        self._update_watch()

    def _stop_run(self, run: _Run, reason: str) -> None:
        """Cancel a handler whose job is no longer ours (nothing will be written for it)."""
        if run.handler_done or run.stop_reason is not None or run.task is None or run.task.done():
            return
        run.stop_reason = reason
        # Logged when decided: the handler may take a while to end (its cancellation may wait for a
        # shielded write that has to give up on an unreachable database first).
        log.warning("job %d (%s): stopping its handler: %s", run.job.job_id, run.job.job_type, reason)
        run.task.cancel()

    async def _execute(self, ctx: JobContext, run: _Run) -> None:
        job = run.job
        _deadline.set(run.deadline)  # this task's own context: time_left() in the handler
        started = time.monotonic()
        outcome: str | None = None  # for /metrics: done, snoozed, retry or final (None: not ours any more)
        METRICS.in_flight += 1
        try:
            handler = self.handlers.get(job.job_type)
            if handler is None:
                raise PermanentFailure(
                    f"no handler for job_type {job.job_type!r} in pool {self.pool!r} "
                    f"(known: {', '.join(sorted(self.handlers)) or 'none'})"
                )
            try:
                await handler(ctx, job)
            finally:
                run.handler_done = True
        except Snooze as snoozed:
            seconds, reason = snoozed.seconds, snoozed.reason
            outcome = "snoozed"
            await self._settle(job, lambda c: queue.snooze(c, job.job_id, self.worker_id, seconds, reason))
            self._plan(seconds)  # end the idle sleep when the job is due again
        except PermanentFailure as exc:
            outcome = await self._record_failure(job, str(exc), permanent=True)
        except asyncio.CancelledError:
            if run.stop_reason is None:
                raise  # shutdown: _drain releases the job
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # handled: what follows must not look cancelled
            if run.stop_reason == TIME_LIMIT:
                error = f"timed out after {run.limit:g} s (the time limit of {job.job_type})"
                log.warning("job %d (%s) %s: cancelled", job.job_id, job.job_type, error)
                outcome = await self._record_failure(job, error, permanent=False)
            else:  # nothing to write: the job is no longer ours
                log.warning("job %d (%s): handler stopped: %s", job.job_id, job.job_type, run.stop_reason)
        except Exception as exc:
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            if run.stop_reason not in (None, TIME_LIMIT):
                # Stopped because the job is no longer ours (lease lost or lapsed), and the handler
                # turned its cancellation into an error on the way out (e.g. a database write it
                # retried): still nothing to write.
                log.warning("job %d (%s): handler stopped: %s (it ended with %s)", job.job_id, job.job_type,
                            run.stop_reason, redact(detail))  # fmt: skip
                return
            if run.stop_reason is None and connection_lost(exc):
                outcome = await self._retry_after_connection_loss(ctx, job, redact(detail))
                return
            if run.stop_reason == TIME_LIMIT:  # the handler turned its cancellation into an error
                detail = f"timed out after {run.limit:g} s (the time limit of {job.job_type}): {detail}"
            log.warning("job %d (%s) failed: %s", job.job_id, job.job_type, redact(detail))
            outcome = await self._record_failure(job, detail, permanent=False)
        else:
            outcome = "done"
            if job.job_id not in ctx.completed:  # else the handler completed it in its own transaction
                self._to_complete.append(job.job_id)
                self._completion_wanted.set()
            self.jobs_done += 1
        finally:
            ctx.completed.discard(job.job_id)
            METRICS.in_flight -= 1
            if outcome is not None:
                METRICS.job_finished(job.job_type, outcome, time.monotonic() - started)
            self.last_activity = time.time()
            self._jobs_changed = True
            if self._inflight.get(job.job_id) is run:
                del self._inflight[job.job_id]
            self._slot_free.set()
            self._update_watch()

    async def _retry_after_connection_loss(self, ctx: JobContext, job: Job, detail: str) -> str:
        """The database went away under the handler (a restart, a failover, a cut link): not the job's
        fault, so no retry is counted: with a budget of a few retries, one restart must not push every
        in-flight job towards 'failed' or into minutes of backoff. The job runs again shortly; the pool's
        other idle connections died with the server too, so they are checked (and dropped) now rather
        than each failing a job of its own."""
        log.warning("job %d (%s): database connection lost (%s); runs again in %g s, not counted as a retry",
                    job.job_id, job.job_type, detail, RECONNECT_RETRY_SECONDS)  # fmt: skip
        if self._pool_check is None or self._pool_check.done():
            self._pool_check = asyncio.create_task(_drop_dead_connections(ctx.db))
        reason = f"database connection lost: {detail}"[:500]
        await self._settle(job, lambda c: queue.snooze(c, job.job_id, self.worker_id, RECONNECT_RETRY_SECONDS, reason))
        self._plan(RECONNECT_RETRY_SECONDS)
        return "snoozed"

    async def _record_failure(self, job: Job, error: str, *, permanent: bool) -> str:
        """Write the failure; "final" when the job failed for good, else "retry" (for /metrics)."""
        error = redact(error)
        self.last_error = f"job {job.job_id} ({job.job_type}): {error}"[:500]
        delay = self.options.backoff.delay(job.retries)
        status = await self._settle(
            job, lambda c: queue.fail(c, job.job_id, self.worker_id, error, delay=delay, permanent=permanent)
        )
        if status == "failed":
            self.jobs_failed += 1
            return "final"
        self._plan(delay)  # end the idle sleep when the retry is due
        return "retry"

    async def _settle(self, job: Job, write: Callable[[Conn], Awaitable[T]]) -> T | None:
        """Write a job's outcome, retrying through database outages for as long as the lease
        lasts; after that the job will be reaped and re-run, which is the safe default."""
        return await self._write(write, within=self.options.lease_seconds, what=f"outcome of job {job.job_id}")

    async def _write(self, write: Callable[[Conn], Awaitable[T]], *, within: float, what: str) -> T | None:
        """Run `write` on a queue connection, retrying database errors with backoff for `within`
        seconds; its result, or None (logged) when the database stayed unreachable."""
        assert self._db is not None
        try:
            return await durable.with_conn(self._db, write, lease=within, retry_on=(psycopg.Error, OSError))
        except (psycopg.Error, OSError) as exc:
            log.error("could not write %s: %s", what, redact(str(exc)))
            return None

    # ------------------------------------------------------------------ batched completion
    async def _completer(self) -> None:
        while True:
            await self._completion_wanted.wait()
            if self.options.batch_delay_seconds > 0:
                await asyncio.sleep(self.options.batch_delay_seconds)
            self._completion_wanted.clear()
            await self._flush_completions()

    async def _flush_completions(self) -> None:
        async with self._completion_lock:
            failures = 0
            while self._to_complete:
                batch, self._to_complete = self._to_complete, []
                try:
                    assert self._db is not None
                    async with self._db.connection() as conn:
                        await queue.complete_many(conn, batch, self.worker_id)
                    failures = 0
                except (psycopg.Error, OSError) as exc:
                    self._to_complete[:0] = batch  # keep them; the lease still protects the jobs
                    failures += 1
                    log.warning("completion write failed (%s); retrying", redact(str(exc)))
                    await asyncio.sleep(min(2.0, 0.1 * 2**failures))

    # ------------------------------------------------------------------ wake-ups
    async def _listen(self) -> None:
        """LISTEN for operators' cancel notices when the watch does not hear them: while this worker
        runs jobs without watching. On a dedicated autocommit connection (not the pool), reconnected
        for ever; UNLISTEN after a few idle seconds, because PostgreSQL wakes every listening session
        of the database for each NOTIFY on any channel."""
        failures = 0
        while True:
            await self._cancel_listen_wanted.wait()
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    while True:
                        await self._cancel_listen_wanted.wait()
                        await conn.execute(f"LISTEN {queue.NOTIFY_CHANNEL}")
                        failures = 0
                        await self._hear(conn, self._cancel_listen_unwanted, linger=CANCEL_LISTEN_LINGER)
                        await conn.execute("UNLISTEN *")
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                failures += 1
                log.debug("listener lost (%s); reconnecting", exc)
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))

    def _on_notice(self, payload: str) -> None:
        if not payload:  # the watched pool has jobs due now
            self._wakeup.set()
        elif payload.startswith(queue.LATER_NOTICE):  # "+<seconds until due>"
            with contextlib.suppress(ValueError):
                self._plan(float(payload[len(queue.LATER_NOTICE) :]))
        elif payload.startswith(queue.CANCEL_NOTICE):  # an operator cancelled a job
            with contextlib.suppress(ValueError):
                run = self._inflight.get(int(payload[len(queue.CANCEL_NOTICE) :]))
                if run is not None:
                    self._stop_run(run, "cancelled by an operator")

    async def _hear(self, conn: Conn, until: asyncio.Event, *, linger: float = 0.0) -> None:
        """Handle the notifications `conn` LISTENs to until `until` is set (and, with `linger`, has
        stayed set that long); raises when the connection fails."""

        async def read() -> None:
            async for note in conn.notifies():
                self._on_notice(note.payload)

        async def ended() -> None:
            while True:
                await until.wait()
                if not linger or self._stopping.is_set():
                    return
                with contextlib.suppress(TimeoutError):  # a stop ends the linger at once
                    await asyncio.wait_for(self._stopping.wait(), linger)
                if until.is_set():
                    return

        reader = asyncio.create_task(read())
        stop = asyncio.create_task(ended())
        try:
            await asyncio.wait((reader, stop), return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            stop.cancel()
            await asyncio.gather(reader, stop, return_exceptions=True)
        failure = reader.exception() if reader.done() and not reader.cancelled() else None
        if failure is not None:
            raise failure  # the connection failed: the caller reconnects

    def _update_watch(self) -> None:
        """Want the watch while this worker can take more jobs; give it up when full or stopping.
        Listen for cancel notices apart from the watch while running jobs without it."""
        _toggle(self._watch_wanted, self._watch_unwanted,
                not self._stopping.is_set() and len(self._inflight) < self.options.concurrency)  # fmt: skip
        _toggle(self._cancel_listen_wanted, self._cancel_listen_unwanted, bool(self._inflight) and not self.watching)

    async def _watch(self) -> None:
        """Hold the pool's watch and hear of new jobs. One idle worker per pool watches at a time: the
        holder of a session advisory lock (one key per pool) on a connection of its own LISTENs on
        the pool's wake channel; the others wait for the lock, which PostgreSQL hands to the next
        waiter when the holder gives it up (full, stopping) or its session ends (the worker died).
        So a new job wakes one worker, not all of them, and a worker that takes the watch claims at
        once (jobs may have arrived while nobody watched). A worker that is not watching still
        claims on its poll and when a job it retried or snoozed is due."""
        channel = queue.wake_channel(self.pool)
        key = WATCH_LOCK_KEYS[self.pool]
        failures = 0
        while True:
            await self._watch_wanted.wait()
            try:
                async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
                    while True:
                        await self._watch_wanted.wait()
                        if not await self._take_watch_lock(conn, key):
                            continue
                        await conn.execute(f"LISTEN {channel}; LISTEN {queue.NOTIFY_CHANNEL}")
                        failures = 0
                        self.watching = True
                        self._update_watch()
                        self._plan_known = False  # nobody may have heard of jobs scheduled meanwhile
                        self._wakeup.set()
                        try:
                            await self._hear(conn, self._watch_unwanted, linger=WATCH_HANDOFF_SECONDS)
                        finally:
                            self.watching = False
                            self._update_watch()
                        await conn.execute("UNLISTEN *")
                        await conn.execute("SELECT pg_advisory_unlock(%s, %s)", key)
                        await conn.execute(f"NOTIFY {_handoff_channel(self.pool)}")  # the next waiter tries
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                failures += 1
                log.debug("watch connection lost (%s); reconnecting", exc)
                self._plan_known = False
                self._wakeup.set()  # notifications may have been missed: look once
                await asyncio.sleep(min(5.0, 0.2 * 2 ** min(failures, 5)))

    async def _take_watch_lock(self, conn: Conn, key: tuple[int, int]) -> bool:
        """Take the pool's watch lock, waiting while another worker holds it; False when this worker
        stopped wanting the watch meanwhile. The wait is a LISTEN for the holder's handoff notice with
        a try every WATCH_RETRY_SECONDS, never a blocking pg_advisory_lock (see WATCH_RETRY_SECONDS)."""
        handoff = _handoff_channel(self.pool)
        await conn.execute(f"LISTEN {handoff}")  # before the try: a handoff after it is heard
        taken = False
        while not taken and self._watch_wanted.is_set():
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", key)
            row = await cur.fetchone()
            taken = bool(row and row[0])
            if not taken:
                async for _note in conn.notifies(timeout=WATCH_RETRY_SECONDS, stop_after=1):
                    pass  # the holder gave the watch up: try again
        await conn.execute(f"UNLISTEN {handoff}")  # a watcher hears only its pool's jobs and cancels
        return taken

    async def _announce_changes(self) -> None:
        """Tell the control center that jobs changed, at most once a second (the queue's tables send
        no NOTIFY per statement: every listening session would be woken by each)."""
        while True:
            await asyncio.sleep(ANNOUNCE_SECONDS)
            if not self._jobs_changed:
                continue
            self._jobs_changed = False
            try:
                assert self._db is not None
                async with self._db.connection() as conn:
                    await queue.announce_changes(conn)
            except (psycopg.Error, OSError) as exc:
                log.debug("could not announce job changes: %s", exc)

    # ------------------------------------------------------------------ heartbeat
    async def _heartbeat_loop(self) -> None:
        period = min(self.options.heartbeat_seconds, self.options.lease_seconds / 3)
        while True:
            try:
                await self._heartbeat()
            except (psycopg.Error, OSError) as exc:
                log.debug("heartbeat failed: %s", exc)
            await asyncio.sleep(period)

    async def _heartbeat(self) -> None:
        assert self._db is not None
        lease = self.options.lease_seconds
        async with self._db.connection() as conn:
            # A handler a lease past its time limit ignores its cancellation: its lease is left to run
            # out, so the job is reaped (a retry counted) and no longer held here for ever.
            now = time.monotonic()
            snapshot = {j: run for j, run in self._inflight.items() if now < run.deadline + lease}
            held = await queue.extend_leases(conn, snapshot, self.worker_id, lease)
            for j in held:
                if j in snapshot:
                    snapshot[j].lease_until = now + lease
            # Jobs that finished during the await (their outcome written or being written) are not
            # lost, nor are jobs claimed meanwhile: only handlers still running here whose lease was
            # not extended. They are cancelled at once: the job is someone else's, or cancelled.
            lost = [
                run
                for j, run in snapshot.items()
                if j not in held and self._inflight.get(j) is run and not run.handler_done
            ]
            for run in lost:
                self._stop_run(run, "lease lost (the job was cancelled, or re-queued for another worker)")
            reaped = await queue.reap_expired_leases(conn)
            if reaped:
                log.warning("re-queued %d job(s) whose worker stopped heartbeating", reaped)
            for periodic in self.options.periodic:
                await queue.enqueue_periodic(conn, periodic.job_type, periodic.every_seconds, periodic.payload)
            await self._upsert_health(conn)

    async def _upsert_health(self, conn: Conn) -> None:
        await health.upsert(
            conn,
            worker_id=self.worker_id,
            bot_name=self.bot_name,
            status=self._status,
            last_activity=self.last_activity,
            pid=os.getpid(),
            host=socket.gethostname(),
            done=self.jobs_done,
            failed=self.jobs_failed,
            last_error=self.last_error,
        )

    # ------------------------------------------------------------------ shutdown
    async def _drain(self) -> None:
        tasks = [run.task for run in self._inflight.values() if run.task is not None]
        if tasks:
            log.info("waiting up to %.0fs for %d in-flight job(s)", self.options.grace_seconds, len(tasks))
            await asyncio.wait(tasks, timeout=self.options.grace_seconds)
        leftover = {j: run.task for j, run in self._inflight.items() if run.task is not None}
        for task in leftover.values():
            task.cancel()
        if leftover:
            await asyncio.gather(*leftover.values(), return_exceptions=True)
            ids = list(leftover)

            await self._write(lambda c: queue.release(c, ids, self.worker_id), within=2.5, what="released jobs")
            log.info("released %d unfinished job(s) back to the queue", len(ids))
        await self._flush_completions()

    # ------------------------------------------------------------------ time limits
    async def _enforce_time_limits(self) -> None:
        """Cancel handlers past their deadline, within a second of it. One task for every job (not a
        timer per job): the claim → complete path, which runs thousands of times a second, pays
        nothing for time limits."""
        while True:
            now = time.monotonic()
            wake = now + 1.0
            for run in list(self._inflight.values()):
                if run.deadline <= now:
                    self._stop_run(run, TIME_LIMIT)
                elif run.lease_until <= now and not run.handler_done:
                    # Cut off from the database for a whole lease (a partition, a hung connection):
                    # the job may already run elsewhere, so this copy stops rather than race it.
                    self._stop_run(run, LEASE_LAPSED)
                else:
                    wake = min(wake, run.deadline, run.lease_until)
            await asyncio.sleep(max(0.0, wake - time.monotonic()))

    # ------------------------------------------------------------------ the event-loop watchdog
    async def _loop_beats(self) -> None:
        """The loop's sign of life for the watchdog thread: a timestamp, refreshed while it runs."""
        report, _ = self.options.stall_thresholds()
        tick = min(0.5, report / 4)
        while True:
            self._loop_beat = time.monotonic()
            await asyncio.sleep(tick)

    def _start_watchdog(self) -> threading.Thread:
        self._loop = asyncio.get_running_loop()
        self._loop_thread_id = threading.get_ident()
        self._loop_beat = time.monotonic()
        self._watchdog_stop.clear()
        thread = threading.Thread(target=self._watch_loop, name=f"{self.worker_id}:watchdog", daemon=True)
        thread.start()
        return thread

    def _watch_loop(self) -> None:
        """Runs in its own thread: report a blocked event loop once, update the report while it stays
        blocked, exit the process when it stays blocked too long."""
        report, exit_after = self.options.stall_thresholds()
        tick = min(0.5, report / 4)
        reported_at: float | None = None  # the stall's length at its last write
        longest = 0.0  # the current stall's length, as last seen
        while not self._watchdog_stop.wait(tick):
            silent = time.monotonic() - self._loop_beat
            if silent < report:
                if reported_at is not None:
                    log.warning("event loop of %s responsive again after a stall of %.0f s", self.worker_id, longest)
                    reported_at = None
                continue
            longest = silent
            if reported_at is not None and silent < exit_after and silent - reported_at < report:
                continue
            detail = f"event loop blocked for {silent:.0f} s {self._blocker()}"
            self.last_error = detail[:500]
            if reported_at is None:
                log.error("%s; its heartbeat has stopped, so its leases will run out", detail)
            reported_at = silent
            self._record_stall(silent, detail)
            if silent >= exit_after:
                log.critical("%s: exiting (status %d) so that a supervisor restarts the worker", detail,
                             EXIT_LOOP_STALLED)  # fmt: skip
                for handler in logging.getLogger().handlers:
                    with contextlib.suppress(Exception):
                        handler.flush()
                os._exit(EXIT_LOOP_STALLED)

    def _blocker(self) -> str:
        """Which job's handler holds the loop, and where (best effort, from the loop thread's stack)."""
        parts = []
        with contextlib.suppress(Exception):
            assert self._loop is not None
            task = asyncio.current_task(self._loop)  # a dict read in CPython: fine from another thread
            for run in list(self._inflight.values()):
                if run.task is not None and run.task is task:
                    parts.append(f"by job {run.job.job_id} ({run.job.job_type})")
        with contextlib.suppress(Exception):
            frame = sys._current_frames().get(self._loop_thread_id or 0)
            if frame is not None:
                parts.append(f"at {Path(frame.f_code.co_filename).name}:{frame.f_lineno} in {frame.f_code.co_name}")
        return " ".join(parts) or "(no job of this worker is running)"

    def _record_stall(self, seconds: float, detail: str) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
                health.record_stall(
                    conn,
                    seconds,
                    redact(detail),
                    worker_id=self.worker_id,
                    bot_name=self.bot_name,
                    pid=os.getpid(),
                    host=socket.gethostname(),
                )
        except Exception as exc:  # the database may be what is slow; the log line stands
            log.debug("could not record the loop stall: %s", redact(str(exc)))


def _handoff_channel(pool: Pool) -> str:
    """The channel a worker giving up the pool's watch notifies, so that a waiting worker takes it."""
    return f"tgms_watch_{pool}"


def _toggle(on: asyncio.Event, off: asyncio.Event, value: bool) -> None:
    """Set one of a pair of events (wanted / unwanted) and clear the other."""
    (off if value else on).clear()
    (on if value else off).set()
