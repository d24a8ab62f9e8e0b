"""`tgms_decide_join_requests`: an operator's approve or decline of queued join requests, in batches.

A raid can leave thousands of requests held; declining them all must go as fast as Telegram lets the
bot (TGMS_RATE_PER_SECOND, shared by every worker process), and no faster. So the decider does not
take one request at a time (read, token, claim, call, record: four round trips around each call).
It works in batches, and keeps several batches in flight:

1. take as many rate-limit tokens as the bot's bucket holds, up to a batch (one statement,
   `RateLimiter.acquire_up_to`; one decision job per process polls the bucket at a time); tokens
   not used after all are given back;
2. claim that many requests of its list in one conditional statement (`join_gate.claim_batch`):
   only rows still in the queue move to 'processing' with this job's id, so two operators, an
   expiry or a ban never decide a request twice;
3. start the batch's approve/decline calls side by side and go back to 1 without waiting: the
   calls of one batch overlap with the token wait and the claim of the next, across groups;
4. when a batch's calls have all answered, record their outcomes in one statement
   (`join_gate.settle_batch`).

Crash safety. The intent ('processing' with the job's id) is recorded before a call, the outcome
after it. A stop or a time limit lets the calls in flight finish and be recorded. A worker that dies
between the two leaves rows 'processing'; the job's next run finds them first (`join_gate.stranded`)
and does not call again: approve/decline name the user, not the request, so a repeated call could
decide a newer request of that user. An approval whose user is now a member is recorded 'approved'
(getChatMember says so); the rest become 'ambiguous' and wait in the queue, where an operator can
decide them again. A call whose answer was lost after it left (a timeout, a broken connection) is
ambiguous the same way. A call Telegram refused without acting (429, a 5xx from the Bot API itself,
a connection that never opened) is made again later in the same run.

A job that never runs again leaves its claimed rows behind: it failed for good (retries used up, its
worker killed on the last attempt), or an operator cancelled it. The periodic sweep
(`sweep_abandoned_decisions`, every lease) resolves them the same way, a lease after the job's last
change, without calling approve/decline: approved when the user is a member, else ambiguous.

Slices: the job has a time limit like every job; a run stops claiming a margin before it, lets its
batches finish and snoozes the job for 0 s, which carries on in a fresh run.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from psycopg import AsyncConnection

from tgms_tui.backend import join_gate
from tgms_tui.backend.join_gate import BatchRow
from tgms_tui.backend.queue import Job

from .bots import Bots, bots_for
from .durable import with_conn
from .rate_limit import RateLimitTimeout
from .runner import JobContext, PermanentFailure, Snooze, time_left, uninterruptible
from .telegram_api import (
    HideRequesterMissing,
    RetryAfter,
    TelegramClient,
    TelegramError,
    Unauthorized,
    UserAlreadyParticipant,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

# Tokens (and so requests) one batch takes at most; the bucket rarely holds more than a tenth of a
# second of tokens, so at 30/s a batch is a handful and at 200/s about twenty.
BATCH = 50
# Batches whose calls may be in flight at once per job: enough to hide a slow answer behind the next
# batches, few enough that a stop waits for little.
MAX_BATCHES_IN_FLIGHT = 8
# A call Telegram refused without acting (5xx, no connection) is tried this often in all.
MAX_ATTEMPTS = 5
SLICE_MARGIN = 60.0
MEMBER_STATUSES = frozenset({"creator", "administrator", "member", "restricted"})
AMBIGUOUS_CRASH = (
    "the worker stopped during the call: Telegram may have acted on it; not repeated (decide it again if it "
    "is still waiting in Telegram)"
)
AMBIGUOUS_ABANDONED = (
    "the decision job {job} ended ({how}) during the call: Telegram may have acted on it; not repeated (decide "
    "it again if it is still waiting in Telegram)"
)
AMBIGUOUS_ABANDONED_REQUEST = (
    "the job {job} handling this request ended ({how}) after recording its intent to {call}: Telegram may have "
    "acted on it; not repeated (decide it again if it is still waiting in Telegram)"
)
SWEEP_LIMIT = 1000


@dataclass
class _Retry:
    row: BatchRow
    attempts: int
    not_before: float = field(default=0.0)


class BulkDecider:
    """Carries out one decision job: the payload's ids, approve or decline, at the bot's rate."""

    def __init__(self, ctx: JobContext, job: Job, bots: Bots, ids: list[int], decision: str, by: str) -> None:
        self.ctx = ctx
        self.job = job
        self.bots = bots
        self.ids = ids
        self.decision = decision
        self.final = join_gate.DECISIONS[decision]
        self.by = by
        self.note = f"{decision}d by {by}"
        self.limiter = bots.limiter
        self.bot_key = bots.client(bots.resolve_role(None, "tgms"), paced=False).bot_key
        self.todo: collections.deque[int] = collections.deque()
        self.retries: list[_Retry] = []
        self.batches: set[asyncio.Task[None]] = set()
        self.rejected: str | None = None  # the bot token was refused: stop
        self.decided = 0
        left = time_left()
        self.slice_ends = None if left is None else time.monotonic() + left - min(left / 2, SLICE_MARGIN)

    def _slice_left(self) -> float | None:
        return None if self.slice_ends is None else self.slice_ends - time.monotonic()

    # ------------------------------------------------------------ the run

    async def run(self) -> None:
        stranded = await self._with_conn(lambda conn: join_gate.stranded(conn, self.ids, self.job.job_id))
        if stranded:
            await self._resolve_stranded(stranded)
        # Rows it left ambiguous (now or in any earlier run) are not this job's to decide again: an
        # operator's next decision is. `claim_batch` skips them.
        self.todo.extend(await self._with_conn(lambda conn: join_gate.still_waiting(conn, self.ids)))
        try:
            sliced = await self._decide_all()
        finally:
            # A stop or a time limit waits for the calls in flight and their record.
            await uninterruptible(self._wind_down())
        for task in self.batches:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        if self.rejected is not None:
            raise PermanentFailure(f"the bot token was rejected: {self.rejected}")
        if sliced:
            note = f"time slice used up after {self.decided} decision(s): carrying on in a fresh run"
            raise Snooze(0.0, note)

    async def _decide_all(self) -> bool:
        """Claim and start batches until nothing is left; True when the slice ended first."""
        while self.rejected is None:
            self._reap()
            now = time.monotonic()
            ready = [r for r in self.retries if r.not_before <= now]
            if not self.todo and not ready:
                if not self.batches and not self.retries:
                    return False
                await self._wait_a_little(now)
                continue
            if len(self.batches) >= MAX_BATCHES_IN_FLIGHT:
                await asyncio.wait(self.batches, return_when=asyncio.FIRST_COMPLETED)
                continue
            left = self._slice_left()
            if left is not None and left <= 0:
                return True
            want = min(BATCH, len(self.todo) + len(ready))
            try:
                # One decision job of this process polls the shared bucket at a time, waking when a
                # quarter of it has refilled: few statements, and room for a late wake-up.
                async with self.ctx.services.decision_tokens:
                    tokens = await self.limiter.acquire_up_to(
                        self.bot_key, want, timeout=left, batch=self.limiter.burst / 4
                    )
            except RateLimitTimeout:
                return True
            rows = [r.row for r in ready[:tokens]]
            attempts = {r.row.request_id: r.attempts for r in ready[:tokens]}
            taken = {id(r) for r in ready[:tokens]}
            self.retries = [r for r in self.retries if id(r) not in taken]
            if tokens > len(rows) and self.todo:
                rows += await self._claim(tokens - len(rows))
            if tokens > len(rows):
                await self.limiter.give_back(self.bot_key, tokens - len(rows))
            if rows:
                task = asyncio.create_task(self._batch(rows, attempts))
                self.batches.add(task)
        return False

    async def _wind_down(self) -> None:
        if self.batches:
            await asyncio.gather(*self.batches, return_exceptions=True)
        if self.retries:
            # Refused without effect and not tried again in this run: back to the queue (the next
            # run of a sliced job takes them again).
            ids = [r.row.request_id for r in self.retries]
            await self._with_conn(lambda conn: join_gate.release_batch(conn, self.job.job_id, ids, "not decided yet"))
            self.retries.clear()

    def _reap(self) -> None:
        for task in [t for t in self.batches if t.done()]:
            self.batches.discard(task)
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    async def _wait_a_little(self, now: float) -> None:
        """Nothing to claim now: wait for a batch to finish or a retry to be due."""
        due = min((r.not_before for r in self.retries), default=now + 1.0)
        timeout = max(0.01, due - now)
        if self.batches:
            await asyncio.wait(self.batches, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(timeout)

    async def _claim(self, n: int) -> list[BatchRow]:
        """The next `n` requests of the list that are still in the queue, now 'processing' for us."""
        candidates = [self.todo.popleft() for _ in range(min(n, len(self.todo)))]
        claimed = await self._with_conn(
            lambda conn: join_gate.claim_batch(conn, candidates, self.decision, self.job.job_id, self.by)
        )
        return [row for row in claimed if row.status == "processing"]

    # ------------------------------------------------------------ one batch

    async def _batch(self, rows: list[BatchRow], attempts: dict[int, int]) -> None:
        outcomes = await asyncio.gather(*(self._call(row, attempts.get(row.request_id, 0) + 1) for row in rows))
        settled = [o for o in outcomes if o is not None]
        await self._with_conn(lambda conn: join_gate.settle_batch(conn, self.job.job_id, settled, self.note))
        self.decided += len(settled)

    async def _call(self, row: BatchRow, attempt: int) -> tuple[int, str, str | None] | None:
        """Call Telegram for one request: its outcome (id, status, error), or None when it is to be
        tried again later in this run."""
        client = self._client(row)
        try:
            if self.decision == "approve":
                await client.approve_chat_join_request(row.chat_id, row.user_id)
            else:
                await client.decline_chat_join_request(row.chat_id, row.user_id)
        except RetryAfter as exc:
            # Refused, not done: the whole bot waits (every process), the request is tried again.
            await self.limiter.pause(self.bot_key, exc.retry_after)
            self.retries.append(_Retry(row, attempt - 1))
            return None
        except UserAlreadyParticipant as exc:
            return row.request_id, "already_member", exc.description
        except HideRequesterMissing as exc:
            return row.request_id, "expired", exc.description
        except Unauthorized as exc:
            self.rejected = exc.description
            return row.request_id, "failed", exc.description
        except TelegramError as exc:
            if exc.maybe_delivered:
                return row.request_id, "ambiguous", f"{exc.description} (may have reached Telegram; not repeated)"
            if exc.retryable and attempt < MAX_ATTEMPTS:
                self.retries.append(_Retry(row, attempt, time.monotonic() + min(30.0, 0.5 * 2**attempt)))
                return None
            return row.request_id, "failed", exc.description
        except Exception as exc:
            # Not an answer from Telegram: we cannot know whether the call had an effect.
            log.exception("join request %s: unexpected error during the call", row.request_id)
            return row.request_id, "ambiguous", f"{type(exc).__name__} during the call (not repeated)"[:1000]
        return row.request_id, self.final, None

    def _client(self, row: BatchRow) -> TelegramClient:
        return self.bots.client(self.bots.resolve_role(row.bot, "tgms"), paced=False)

    # ------------------------------------------------------------ after a crash

    async def _resolve_stranded(self, rows: list[BatchRow]) -> None:
        """Rows an earlier run of this job claimed and never settled: never called again. An
        approval whose user is a member now did go through; everything else is ambiguous."""

        async def outcome(row: BatchRow) -> tuple[int, str, str | None]:
            if self.decision == "approve" and await is_member(self._client(row), row.chat_id, row.user_id):
                return row.request_id, "approved", None
            return row.request_id, "ambiguous", AMBIGUOUS_CRASH

        outcomes = list(await asyncio.gather(*(outcome(row) for row in rows)))
        await self._with_conn(lambda conn: join_gate.settle_batch(conn, self.job.job_id, outcomes, self.note))
        unknown = sum(1 for o in outcomes if o[1] == "ambiguous")
        if unknown:
            log.warning("decision job %d: %d request(s) left mid-call by a stopped worker marked ambiguous",
                        self.job.job_id, unknown)  # fmt: skip

    # ------------------------------------------------------------ database writes that must land

    async def _with_conn(self, work: Callable[[AsyncConnection[Any]], Awaitable[T]]) -> T:
        """`work` through `durable.with_conn`: the outcome of a call that reached Telegram must not be lost."""
        return await with_conn(self.bots.db, work, lease=self.ctx.settings.lease_seconds)


async def is_member(client: TelegramClient, chat_id: int, user_id: int) -> bool:
    """Whether Telegram lists the user as in the chat now (a read: it decides nothing)."""
    try:
        member = await client.get_chat_member(chat_id, user_id)
    except TelegramError:
        return False
    return member.get("status") in MEMBER_STATUSES


async def sweep_abandoned_decisions(ctx: JobContext, job: Job) -> None:
    """Periodic job: rows a decision job, a single request's job (`tgms_process_join_request`), a
    verification press or a deadline claimed and will never settle (it failed for good or was
    cancelled) leave 'processing' (or 'declining', a fleet-ban decline) for what we know, without
    another approve/decline: approved when the user is a member now (an approval), else ambiguous,
    in the queue for an operator."""
    bots = await bots_for(ctx)
    async with bots.db.connection() as conn:
        rows = await join_gate.abandoned(conn, ctx.settings.lease_seconds, SWEEP_LIMIT)
    if not rows:
        return

    async def outcome(row: join_gate.AbandonedRow) -> tuple[join_gate.AbandonedRow, str, str | None]:
        client = bots.client(bots.resolve_role(row.bot, "tgms"), paced=False)
        if row.decision == "approve" and await is_member(client, row.chat_id, row.user_id):
            return row, "approved", None
        if row.job_type == join_gate.DECIDE_JOB:
            return row, "ambiguous", AMBIGUOUS_ABANDONED.format(job=row.job_id, how=row.job_status)
        call = (
            "approve"
            if row.decision == "approve"
            else "decline (the user is on the fleet's ban list)"
            if row.status == "declining"
            else "decline"
        )
        return row, "ambiguous", AMBIGUOUS_ABANDONED_REQUEST.format(job=row.job_id, how=row.job_status, call=call)

    outcomes = list(await asyncio.gather(*(outcome(row) for row in rows)))
    async with bots.db.connection() as conn:
        await join_gate.settle_abandoned(conn, outcomes)
    unknown = sum(1 for o in outcomes if o[1] == "ambiguous")
    log.warning("%d request(s) left mid-decision by jobs that ended: %d ambiguous, %d approved",
                len(outcomes), unknown, len(outcomes) - unknown)  # fmt: skip


async def decide_join_requests(ctx: JobContext, job: Job) -> None:
    """Job handler: an operator's decision on queued requests, paced by the bot's shared rate limit."""
    try:
        ids = [int(i) for i in job.payload["ids"]]
        decision = str(job.payload["decision"])
        by = str(job.payload.get("by") or "operator")
    except (KeyError, TypeError, ValueError):
        raise PermanentFailure("payload needs ids and decision") from None
    if decision not in join_gate.DECISIONS:
        raise PermanentFailure("decision must be approve or decline")
    decider = BulkDecider(ctx, job, await bots_for(ctx), ids, decision, by)
    await decider.run()


__all__ = ["BulkDecider", "decide_join_requests", "is_member", "sweep_abandoned_decisions"]
