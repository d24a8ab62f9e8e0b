"""`tgms_send_to_groups`: the seed's GroupSender — one broadcast, each targeted group at most one copy.

How a broadcast runs:

- **Start** (whichever job gets there first): one transaction flips the broadcast pending → running,
  resolves its targets *now* and inserts one `sent_messages` row per group (status 'pending', a unique
  debug code). Only the transaction that made the flip inserts, and the rows are ON CONFLICT DO
  NOTHING, so restarts and concurrent workers agree on one target list. The starting job then enqueues
  helper jobs (dedupe key per broadcast and helper: 2 per live TGMS worker, at most 8) so that several
  TGMS workers share the sending; a helper that lands on a process already running two senders of
  the broadcast passes itself on (a few times at most) so that the senders spread over processes.
- **Send loop** (every job of the broadcast), in batches, so that a paid broadcast (1000/s) is paced by
  its rate and not by round trips: take as many bot tokens as the shared bucket holds, up to a batch
  (one statement; an unpaid broadcast also pays its pace between groups there); reserve that many
  pending rows (one statement, FOR UPDATE SKIP LOCKED); take each row's own per-chat and per-group
  tokens (one statement: a chat that cannot take a message yet keeps its row reserved and waits in
  memory); commit the batch as 'sending' with our worker id (intent recorded, one statement); start
  the calls and go on to the next batch without waiting (at most MAX_IN_FLIGHT copies in flight per
  sender, and no more than the bot bucket holds); when a batch's calls have answered, record the
  copies sent in one statement (the rarer outcomes row by row). Unused tokens go back. A row is
  only ever marked 'sending' from 'pending', so no group gets two copies however many workers run.
- **Crash safety**: a 'sending' row whose worker is gone (no heartbeat for a lease, or stopped) may or
  may not have been delivered: it becomes 'ambiguous' and is never resent (a worker killed mid-batch
  leaves at most its copies in flight so). A graceful stop lets the calls in flight finish and
  records them.
- **Finish**: when no row is pending or sending, the broadcast becomes 'done' (one writer wins).
- **Slices**: a sender job has a time limit like every job, but a broadcast may take hours. So a
  sender stops claiming rows (and stops waiting for the rate limiter) a margin before its limit and
  snoozes its job for 0 s: the same job carries on in a fresh run, with a fresh limit, and no retry
  is counted. If the limit still cancels it (a call hanging for longer than the margin), the calls in
  flight are awaited and recorded first; only a cancel that cuts the call itself leaves the row
  'ambiguous', never resent.
- **Cancel** (`broadcasts.cancel`, from the TUI, the CLI or the API): the broadcast's status leaves
  'running' and its pending rows are skipped in one transaction. Every sender reads the status when it
  reserves a row and again when it records the intent, so no group is started after the cancel
  commits; a send already under way is recorded as it ends. A sender that finds the broadcast
  cancelled returns without error (its job is done, the broadcast shows cancelled).

Every statement is in tgms_tui/backend/broadcasts.py; the group's rules (failure count, deactivation)
in tgms_tui/backend/groups.py. Per-group policy: success resets `consecutive_failures`; a delivery failure (bot kicked
or not a member, chat deleted or not found, no rights) increments it and deactivates the group at
TGMS_MAX_CONSECUTIVE_FAILURES; a 429 pauses the bot and the group is retried; a group upgraded to a
supergroup is rewritten everywhere and retried; neither counts. A content error (bad markup, too
long) stops the whole broadcast — the remaining rows are skipped, the copies already in flight are
recorded as they answer — and counts against no group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import AsyncConnection

from tgms_tui.backend import ab_assignment, broadcasts, buttons, debug_code, groups, health, queue
from tgms_tui.backend.broadcasts import SENDER_MAX_RETRIES, Broadcast
from tgms_tui.backend.queue import Job

from .bots import Bots, bots_for
from .broadcast_copies import CopySender
from .durable import with_conn
from .rate_limit import RateLimitTimeout
from .runner import BOT_NAMES, JobContext, PermanentFailure, Snooze, time_left, uninterruptible
from .telegram_api import (
    ChatAdminRequired,
    ChatMigrated,
    ChatNotFound,
    Forbidden,
    Message,
    RetryAfter,
    StarBalanceTooLow,
    TelegramClient,
    TelegramError,
    Unauthorized,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

JOB_TYPE = "tgms_send_to_groups"
# A row put back after temporary errors (5xx, network before sending) this often is given up on.
MAX_ATTEMPTS = 5
# Copies one batch takes at most, and copies one sender has in flight at most: at the paid rate
# (1000/s) a call's latency hides behind the next batches; two senders per process stay within the
# HTTP client's 100 connections. A sender also keeps no more in flight than the bot bucket's capacity
# (3 at 30/s): calls delayed on their way (a busy machine) then cannot arrive at Telegram as a burst
# beyond what the bucket itself allows.
BATCH = 25
MAX_IN_FLIGHT = 50
# Helper jobs per live TGMS worker, and at most in all: sending is paced by the shared limiter, so
# more senders only hide per-call latency.
SENDERS_PER_WORKER = 2
MAX_SENDERS = 8
# A helper landing on a process that already runs its share is passed on this often, then stays.
MAX_HOPS = 6
PASS_ON_DELAY = 0.05
# A slice ends this long before the job's time limit (half the limit if that is shorter): room for the
# last call in flight (the client gives up after 30 s) and its record.
SLICE_MARGIN = 60.0


@dataclass(frozen=True)
class Claimed:
    message_id: int
    chat_id: int
    debug_code: str


@dataclass(frozen=True)
class Sent:
    """A copy Telegram accepted, to be recorded with the rest of its batch."""

    telegram_message_id: int | None


@dataclass
class _Held:
    """A reserved row whose chat cannot take a message before `not_before` (monotonic)."""

    row: dict[str, Any]
    not_before: float


class _Stop(Exception):
    """The broadcast is no longer running: stop this sender."""


class _SliceOver(Exception):
    """This run's time slice is used up: the job carries on in a fresh run."""


class GroupSender:
    """Sends one broadcast's pending rows until none is left; any number run side by side."""

    def __init__(self, ctx: JobContext, job: Job, broadcast_id: int, bots: Bots) -> None:
        self.ctx = ctx
        self.job = job
        self.broadcast_id = broadcast_id
        # Unpaced: this sender takes the rate-limit tokens itself, before recording the intent.
        self.client: TelegramClient = bots.client(bots.resolve_role(None, "tgms"), paced=False)
        self.limiter = bots.limiter
        self.db = bots.db  # autocommit: the per-send statements are one round trip each
        self.max_failures = ctx.settings.max_consecutive_failures
        self.stale_seconds = ctx.settings.lease_seconds
        self.inflight = ctx.services.sending
        self.broadcast: Broadcast | None = None
        self.buttons: buttons.Rows | None = None  # the broadcast's top-level inline buttons
        self.copies: CopySender | None = None
        self.sent = 0
        self.flights: set[asyncio.Task[None]] = set()  # batches whose calls are in flight
        self.flying = 0  # copies in flight
        self.max_in_flight = 1
        self.held: list[_Held] = []
        self.stopped = False  # the broadcast is no longer running: stop once the flights land
        self.failure: BaseException | None = None  # an unexpected error of a call, raised once they land
        self.backoff = 0.0
        self.retry_at = 0.0  # after a temporary error, no new batch before this (monotonic)
        left = time_left()
        self.slice_ends = None if left is None else time.monotonic() + left - min(left / 2, SLICE_MARGIN)

    def _slice_left(self) -> float | None:
        """Seconds left in this run's slice (None: no time limit, e.g. outside a worker)."""
        return None if self.slice_ends is None else self.slice_ends - time.monotonic()

    def _check_slice(self) -> None:
        left = self._slice_left()
        if left is not None and left <= 0:
            raise _SliceOver

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        started_here = await self._start()
        broadcast = await self._load()
        if broadcast.status == "pending":
            if broadcast.send_at is not None and broadcast.send_at > datetime.now(UTC):
                wait = (broadcast.send_at - datetime.now(UTC)).total_seconds()
                raise Snooze(max(1.0, wait), "scheduled broadcast: not due yet")
            # Due now but not started: it became due (or was edited to an earlier time) between the
            # start attempt and this read. Try again shortly.
            raise Snooze(0.5, "broadcast became due while starting")
        if broadcast.status != "running":
            log.info("broadcast %d is %s: nothing to send", self.broadcast_id, broadcast.status)
            return
        self.broadcast = broadcast
        self.max_in_flight = max(1, min(MAX_IN_FLIGHT, int(self.limiter.bot_capacity(paid=broadcast.paid))))
        if not await self._validate():
            return
        async with self.db.connection() as conn:
            ab = await ab_assignment.has_ab(conn, self.broadcast_id)
        self.copies = CopySender(
            self.client,
            self.db,
            broadcast,
            ab=ab,
            worker_id=self.ctx.worker_id,
            stale_seconds=self.stale_seconds,
            buttons=self.buttons,
        )
        if started_here or "helper" not in self.job.payload:
            await self._fan_out()
        active = self.ctx.services.senders
        crowded = "helper" in self.job.payload and active[self.broadcast_id] >= SENDERS_PER_WORKER
        if crowded and await self._pass_on():
            return
        active[self.broadcast_id] += 1
        try:
            await self._sweep_stale()
            with contextlib.suppress(_Stop):
                await self._send_all()
            await self._finish()
        except _SliceOver:
            note = f"time slice used up after {self.sent} send(s): carrying on in a fresh run"
            log.info("broadcast %d: %s", self.broadcast_id, note)
            raise Snooze(0.0, note) from None
        finally:
            active[self.broadcast_id] -= 1
            if active[self.broadcast_id] <= 0:
                del active[self.broadcast_id]

    async def _pass_on(self) -> bool:
        """This process already runs its share of senders for the broadcast: hand the helper job to
        the queue again (a fresh job, slightly delayed, which wakes every worker) so that another
        process is likely to take it. Gives up after MAX_HOPS and helps here. True if passed on."""
        hops = int(self.job.payload.get("hops", 0))
        if hops >= MAX_HOPS:
            return False
        helper = self.job.payload.get("helper")
        async with self.ctx.db.connection() as conn:
            job_id = await queue.enqueue(
                conn,
                JOB_TYPE,
                {"broadcast_id": self.broadcast_id, "helper": helper, "hops": hops + 1},
                run_at=datetime.now(UTC) + timedelta(seconds=PASS_ON_DELAY),
                priority=self.job.priority,
                dedupe_key=f"broadcast:{self.broadcast_id}:sender:{helper}:hop:{hops + 1}",
                max_retries=SENDER_MAX_RETRIES,
            )
        return job_id is not None

    async def _start(self) -> bool:
        """Flip pending → running and resolve the targets, atomically. True if this call did it."""
        async with self.ctx.db.connection() as conn:
            ids = await broadcasts.start(conn, self.broadcast_id)
        if ids is None:
            return False
        log.info("broadcast %d started: %d group(s)", self.broadcast_id, len(ids))
        return True

    async def _load(self) -> Broadcast:
        async with self.ctx.db.connection() as conn:
            broadcast = await broadcasts.load(conn, self.broadcast_id)
            self.buttons = await buttons.of(conn, self.broadcast_id)
        if broadcast is None:
            raise PermanentFailure(f"no broadcast {self.broadcast_id}")
        return broadcast

    async def _validate(self) -> bool:
        """Catch what Telegram would reject in every group before the first send; stop if so."""
        b = self.broadcast
        assert b is not None
        async with self.ctx.db.connection() as conn:
            code = await broadcasts.longest_code(conn, self.broadcast_id) or debug_code.make(self.broadcast_id, 999)
        # The same check the broadcast passed when it was submitted (with a code at least this long),
        # so this refuses only a broadcast stored by other means or under older rules.
        refused = debug_code.refusal(b.text, b.photo_url, b.caption, b.parse_mode, code)
        if refused is None:
            return True
        await self._stop_broadcast("stopped", f"content error before sending: {refused}")
        return False

    async def _fan_out(self) -> None:
        """Let other TGMS workers help: helper jobs with the same broadcast (one per dedupe key)."""
        async with self.ctx.db.connection() as conn:
            workers = max(1, await health.live_workers(conn, BOT_NAMES["tgms"], self.stale_seconds))
            todo, _ = await broadcasts.remaining(conn, self.broadcast_id)
            senders = min(MAX_SENDERS, SENDERS_PER_WORKER * workers, todo)
            jobs = [
                queue.NewJob(
                    JOB_TYPE,
                    {"broadcast_id": self.broadcast_id, "helper": i},
                    priority=self.job.priority,
                    dedupe_key=f"broadcast:{self.broadcast_id}:sender:{i}",
                    max_retries=SENDER_MAX_RETRIES,
                )
                for i in range(1, senders)
            ]
            await queue.enqueue_many(conn, jobs)

    async def _finish(self) -> None:
        """Mark the broadcast done once nothing is pending or in flight; wait for in-flight sends of
        other workers (or until they are stale and become ambiguous)."""
        while True:
            await self._sweep_stale()
            async with self.db.connection() as conn:
                pending, sending = await broadcasts.remaining(conn, self.broadcast_id)
            if not pending and not sending:
                break
            if pending:
                # Put back by another sender (429, migration), or held by one waiting for its turn.
                try:
                    if await self._send_all():
                        continue
                except _Stop:
                    pass
            self._check_slice()
            await asyncio.sleep(0.5)
        async with self.db.connection() as conn:
            finished = await broadcasts.finish(conn, self.broadcast_id)
        if finished:
            log.info("broadcast %d done", self.broadcast_id)

    async def _sweep_stale(self) -> None:
        async with self.db.connection() as conn:
            rows = await broadcasts.mark_ambiguous(
                conn, self.broadcast_id, self.ctx.worker_id, list(self.inflight), self.stale_seconds
            )
        for message_id, chat_id in rows:
            log.warning(
                "broadcast %d: send to %s (row %d) interrupted by a crash: marked ambiguous, not resent",
                self.broadcast_id,
                chat_id,
                message_id,
            )

    # ------------------------------------------------------------ sending

    async def _send_all(self) -> int:
        """Claim and send batches until no row is claimable; returns how many rows this call handled.
        Before it returns or raises (a stop, a cancel, the slice's end) every call in flight is
        awaited and recorded, and rows still waiting for their chat are given back."""
        handled = 0
        try:
            while True:
                self.flights = {t for t in self.flights if not t.done()}
                if self.failure is not None:
                    raise self.failure
                if self.stopped:
                    raise _Stop
                if self.flying >= self.max_in_flight:
                    await asyncio.wait(self.flights, return_when=asyncio.FIRST_COMPLETED)
                    continue
                self._check_slice()
                backoff = self.retry_at - time.monotonic()
                if backoff > 0:
                    await self._idle(backoff)
                    continue
                claimed = await self._next_batch()
                if claimed is None:
                    if not self.flights and not self.held:
                        return handled
                    # Calls in flight may put rows back (429, migration); held rows wait for their chat.
                    due = min((h.not_before for h in self.held), default=time.monotonic() + 1.0)
                    await self._idle(due - time.monotonic())
                    continue
                handled += claimed
        finally:
            await uninterruptible(self._land())

    async def _idle(self, timeout: float) -> None:
        """Wait up to `timeout` (at most a second), less if a batch in flight ends."""
        timeout = min(1.0, max(0.01, timeout))
        if self.flights:
            await asyncio.wait(self.flights, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(timeout)

    async def _land(self) -> None:
        """Await the batches in flight (each records its outcomes), then give back what is held."""
        if self.flights:
            await asyncio.gather(*self.flights, return_exceptions=True)
        self.flights.clear()
        if self.held:
            ids = [int(h.row["message_id"]) for h in self.held]
            self.held.clear()
            await self._release(ids)
        assert self.copies is not None
        with contextlib.suppress(psycopg.Error, OSError):
            await self.copies.give_back()

    async def _next_batch(self) -> int | None:
        """Take rate-limit tokens for a batch, claim that many rows, record the intent and start their
        calls without waiting for them: how many rows it handled, None when none was claimable.
        Statements per batch, whatever its size: tokens (bot, and the broadcast's pace when unpaid),
        reserve, the chats' own tokens, the intent; and one to record the copies sent."""
        b, copies = self.broadcast, self.copies
        assert b is not None and copies is not None
        if copies.needs_file_id:
            if self.flights:
                # An upload of ours may be in flight: its file_id first, then batches by id.
                await asyncio.wait(self.flights)
                return 0
            try:
                # A photo from disk: its file_id known, or ours to upload, before any intent.
                await copies.ready(self._slice_left())
            except TimeoutError:
                raise _SliceOver from None
        want = 1 if copies.uploading else min(BATCH, self.max_in_flight - self.flying)
        # A paid broadcast is paced by the paid bot rate alone: the delay between groups exists to stay
        # under the free rate, which it pays to exceed.
        pace = None if b.paid else f"broadcast:{self.broadcast_id}"
        bot = self.client.bot_key
        try:
            tokens = await self.limiter.acquire_up_to(
                bot,
                want,
                timeout=self._slice_left(),
                batch=max(1.0, self.limiter.bot_capacity(paid=b.paid) / 4),
                paid=b.paid,
                pace_key=pace,
            )
        except RateLimitTimeout:
            raise _SliceOver from None
        used = 0
        try:
            rows = await self._rows(tokens)
            if not rows:
                return None
            go = await self._sendable(rows)
            claimed = await self._mark(go)
            used = len(claimed)
            if claimed:
                self.flying += len(claimed)
                self.flights.add(asyncio.create_task(self._fly(claimed)))
            return len(rows)
        finally:
            if tokens > used:
                await asyncio.shield(self.limiter.give_back(bot, tokens - used, paid=b.paid, pace_key=pace))

    async def _rows(self, n: int) -> list[dict[str, Any]]:
        """Up to `n` rows: held rows whose chat may pay now first, then newly reserved ones."""
        now = time.monotonic()
        due = [h for h in self.held if h.not_before <= now][:n]
        taken = {id(h) for h in due}
        self.held = [h for h in self.held if id(h) not in taken]
        rows = [h.row for h in due]
        if len(rows) < n:
            async with self.db.connection() as conn:
                more = await broadcasts.reserve(
                    conn, self.broadcast_id, self.ctx.worker_id, self.stale_seconds, n - len(rows)
                )
            # A held row whose reservation grew stale may come back: keep one of each.
            fresh = {int(r["message_id"]) for r in more}
            self.held = [h for h in self.held if int(h.row["message_id"]) not in fresh]
            rows = [r for r in rows if int(r["message_id"]) not in fresh] + more
        return rows

    async def _sendable(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows to send now: the others are skipped (broadcast over, group no longer targeted) or
        held until their chat can take a message (Telegram's per-chat and per-group limits)."""
        b = self.broadcast
        assert b is not None
        over = next((r["broadcast_status"] for r in rows if r["broadcast_status"] != "running"), None)
        if over is not None:
            await self._write(broadcasts.skip_remaining, self.broadcast_id, f"broadcast {over}")
            self.held.clear()
            self.stopped = True
            return []
        go: list[dict[str, Any]] = []
        for row in rows:
            if row["is_active"] or (b.is_final and row["final_allowed"]):
                go.append(row)
            else:
                reason = "group is no longer managed" if row["is_active"] is None else "group is inactive"
                await self._write(broadcasts.skip, int(row["message_id"]), reason)
        if not go:
            return []
        waits = await self.limiter.take_chats(self.client.bot_key, [int(r["chat_id"]) for r in go])
        now = time.monotonic()
        for row, wait in zip(go, waits, strict=True):
            if wait > 0:
                self.held.append(_Held(row, now + wait))
        return [row for row, wait in zip(go, waits, strict=True) if wait == 0]

    async def _mark(self, rows: list[dict[str, Any]]) -> list[Claimed]:
        """Record the intent to send `rows` ('sending'): those still ours; the rest are given back."""
        if not rows:
            return []
        ids = [int(r["message_id"]) for r in rows]
        # In flight from the moment 'sending' can be seen: a sweep by another sender of this process
        # must not take our own rows for a crashed one's.
        self.inflight.update(ids)
        marked: dict[int, int] = {}
        try:
            async with self.db.connection() as conn:
                marked = await broadcasts.mark_sending(conn, self.broadcast_id, ids, self.ctx.worker_id)
        finally:
            lost = [i for i in ids if i not in marked]
            self.inflight.difference_update(lost)
            if lost:
                await asyncio.shield(self._release(lost))
        if lost and not marked:
            async with self.db.connection() as conn:
                now = await broadcasts.load(conn, self.broadcast_id)
            self.stopped = now is None or now.status != "running"
        return [Claimed(int(r["message_id"]), marked[int(r["message_id"])], str(r["debug_code"]))
                for r in rows if int(r["message_id"]) in marked]  # fmt: skip

    async def _release(self, message_ids: list[int]) -> None:
        """Give reservations back (not sent after all): best effort, they expire anyway."""
        with contextlib.suppress(psycopg.Error, OSError):
            async with self.db.connection() as conn:
                await broadcasts.release(conn, message_ids, self.ctx.worker_id)

    async def _fly(self, rows: list[Claimed]) -> None:
        """One batch's calls side by side, then the copies sent recorded in one statement (the other
        outcomes are recorded as they come: they are rare). Never raises: a stop or an unexpected
        error is left for the send loop."""
        try:
            outcomes = await asyncio.gather(*(self._deliver(row) for row in rows), return_exceptions=True)
            sent = [(row.message_id, o) for row, o in zip(rows, outcomes, strict=True) if isinstance(o, Sent)]
            sent_ids = [(m, o.telegram_message_id) for m, o in sent]
            if sent_ids:
                await self._write(broadcasts.mark_sent, sent_ids)
                self.sent += len(sent_ids)
            if any(o is _RETRY for o in outcomes):
                self.backoff = min(30.0, max(1.0, self.backoff * 2))
                self.retry_at = time.monotonic() + self.backoff
            elif sent_ids:
                self.backoff = 0.0
            for o in outcomes:
                if isinstance(o, _Stop):
                    self.stopped = True
                elif isinstance(o, BaseException) and self.failure is None:
                    self.failure = o
        except BaseException as exc:  # the record could not be written: the rows stay 'sending'
            if self.failure is None:
                self.failure = exc
        finally:
            self.flying -= len(rows)
            self.inflight.difference_update(row.message_id for row in rows)

    async def _deliver(self, row: Claimed) -> Sent | object | None:
        """One call and, unless it went out (`Sent`, recorded with its batch), its record. `_RETRY`
        when the row went back to pending after a temporary error (the sender backs off)."""
        b = self.broadcast
        assert b is not None
        try:
            message = await self._call(row)
        except asyncio.CancelledError:
            error = "cancelled while the request was in flight; may have been delivered, not resent"
            await asyncio.shield(self._write(broadcasts.record_outcome, row.message_id, "ambiguous", error))
            raise
        except RetryAfter as exc:
            # Pause the bot in the shared limiter (every process); the next batch waits it out.
            await self.limiter.pause(self.client.bot_key, exc.retry_after, paid=b.paid)
            error = f"429 from Telegram: retry after {exc.retry_after:g}s"
            await self._write(broadcasts.requeue, row.message_id, error, counted=False)
            return None
        except ChatMigrated as exc:
            await self._migrate(row, exc)
            return None
        except TelegramError as exc:
            return _RETRY if await self._failed(row, exc) else None
        except Exception as exc:
            # Not a Telegram answer (a bug, or something unexpected): we cannot know whether it went out.
            await self._write(
                broadcasts.record_outcome, row.message_id, "ambiguous", f"{type(exc).__name__}: {exc}"[:1000]
            )
            raise
        return Sent(message.get("message_id"))

    async def _call(self, row: Claimed) -> Message:
        """The copy for this row (its variant, tracked links, a stored photo by upload or file_id)."""
        assert self.copies is not None
        return await self.copies.send(row.message_id, row.chat_id, row.debug_code)

    async def _migrate(self, row: Claimed, exc: ChatMigrated) -> None:
        """Rewrite the group id everywhere (this row included) and put the row back to be sent to the
        new id; if the broadcast already has a row for the new id, this one was skipped instead."""

        async def work(conn: AsyncConnection[Any]) -> None:
            await groups.rewrite_id(conn, row.chat_id, exc.new_chat_id)
            await broadcasts.requeue(conn, row.message_id, None, counted=False)

        await self._with_conn(work, transaction=True)
        log.info(
            "broadcast %d: group %s migrated to %s; retrying there", self.broadcast_id, row.chat_id, exc.new_chat_id
        )

    async def _failed(self, row: Claimed, exc: TelegramError) -> bool:
        error = exc.description
        if exc.is_content_error:
            await self._write(broadcasts.record_outcome, row.message_id, "failed", error)
            await self._stop_broadcast("stopped", f"content error from Telegram: {error}")
            raise _Stop
        if isinstance(exc, Unauthorized):
            await self._write(broadcasts.record_outcome, row.message_id, "failed", error)
            await self._stop_broadcast("failed", f"the bot token was rejected: {error}")
            raise _Stop
        if isinstance(exc, StarBalanceTooLow):
            # Not sent, not charged, and every later paid copy would fail alike: stop, blame no group.
            await self._write(broadcasts.record_outcome, row.message_id, "failed", error)
            why = f"the bot's Telegram Stars balance is too low for a paid broadcast: {error}"
            await self._stop_broadcast("stopped", why)
            raise _Stop
        if isinstance(exc, Forbidden | ChatNotFound | ChatAdminRequired):
            await self._delivery_failed(row, error)
            return False
        if exc.maybe_delivered:
            note = f"{error} (may have been delivered; not resent)"
            await self._write(broadcasts.record_outcome, row.message_id, "ambiguous", note)
            return False
        if exc.retryable:
            async with self.db.connection() as conn:
                attempts = await broadcasts.attempts(conn, row.message_id)
            if (MAX_ATTEMPTS if attempts is None else attempts) < MAX_ATTEMPTS:
                await self._write(broadcasts.requeue, row.message_id, error)
                return True
        await self._write(broadcasts.record_outcome, row.message_id, "failed", error)
        return False

    async def _delivery_failed(self, row: Claimed, error: str) -> None:
        counted = await self._write(broadcasts.delivery_failed, row.message_id, error, self.max_failures)
        if counted is not None and not counted[1]:
            log.warning("group %s deactivated after %s consecutive failures: %s", row.chat_id, counted[0], error)

    async def _stop_broadcast(self, status: str, error: str) -> None:
        await self._with_conn(lambda conn: broadcasts.stop(conn, self.broadcast_id, status, error), transaction=True)
        log.warning("broadcast %d %s: %s", self.broadcast_id, status, error)

    # ------------------------------------------------------------ database writes that must land

    async def _write(self, write: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """`write(conn, *args, **kwargs)`, one of the broadcasts repository's, through `_with_conn`."""
        return await self._with_conn(lambda conn: write(conn, *args, **kwargs))

    async def _with_conn(self, work: Callable[[AsyncConnection[Any]], Awaitable[T]], *, transaction: bool = False) -> T:
        """`work` through `durable.with_conn`: the outcome of a call that reached Telegram must not be lost."""
        return await with_conn(self.db, work, lease=self.stale_seconds, transaction=transaction)


_RETRY = object()


async def send_to_groups(ctx: JobContext, job: Job) -> None:
    """Job handler: send (or help send) broadcast `payload.broadcast_id`."""
    try:
        broadcast_id = int(job.payload["broadcast_id"])
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("payload needs an integer broadcast_id") from None
    sender = GroupSender(ctx, job, broadcast_id, await bots_for(ctx))
    await sender.run()
    if sender.sent:
        log.info("broadcast %d: this sender delivered %d message(s)", broadcast_id, sender.sent)


__all__ = ["JOB_TYPE", "GroupSender", "send_to_groups"]
