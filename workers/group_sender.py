"""`tgms_send_to_groups`: the seed's GroupSender — one broadcast, each targeted group at most one copy.

How a broadcast runs:

- **Start** (whichever job gets there first): one transaction flips the broadcast pending → running,
  resolves its targets *now* and inserts one `sent_messages` row per group (status 'pending', a unique
  debug code). Only the transaction that made the flip inserts, and the rows are ON CONFLICT DO
  NOTHING, so restarts and concurrent workers agree on one target list. The starting job then enqueues
  helper jobs (dedupe key per broadcast and helper: 2 per live TGMS worker, at most 8) so that several
  TGMS workers share the sending; a helper that lands on a process already running two senders of
  the broadcast passes itself on (a few times at most) so that the senders spread over processes.
- **Send loop** (every job of the broadcast): claim the next pending row with FOR UPDATE SKIP LOCKED,
  wait for the shared rate limiter (bot rate, the group's 20/min, the broadcast's delay between groups),
  commit the row as 'sending' with our worker id (intent recorded), call Telegram, then record 'sent'
  (telegram_message_id, sent_at) or the failure. A row is only ever claimed from 'pending', so no group
  gets two copies however many workers run.
- **Crash safety**: a 'sending' row whose worker is gone (no heartbeat for a lease, or stopped) may or
  may not have been delivered: it becomes 'ambiguous' and is never resent. A graceful stop lets the
  call in flight finish and records it.
- **Finish**: when no row is pending or sending, the broadcast becomes 'done' (one writer wins).

Per-group policy (DESIGN.md §6): success resets `consecutive_failures`; a delivery failure (bot kicked
or not a member, chat deleted or not found, no rights) increments it and deactivates the group at
TGMS_MAX_CONSECUTIVE_FAILURES; a 429 pauses the bot and the group is retried; a group upgraded to a
supergroup is rewritten everywhere and retried; neither counts. A content error (bad markup, too
long) stops the whole broadcast — the remaining rows are skipped — and counts against no group.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from tgms_tui.backend import queue
from tgms_tui.backend.broadcasts import SENDER_MAX_RETRIES, resolve_targets
from tgms_tui.backend.markup import parsed_text as _parsed_text
from tgms_tui.backend.message_validation import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    check_markup,
    visible_length,
)
from tgms_tui.backend.queue import Job

from .bots import Bots, bots_for
from .group_migration import rewrite_group_id
from .runner import JobContext, PermanentFailure, Snooze
from .telegram_api import (
    ChatAdminRequired,
    ChatMigrated,
    ChatNotFound,
    Forbidden,
    Message,
    RetryAfter,
    TelegramClient,
    TelegramError,
    Unauthorized,
)

log = logging.getLogger(__name__)

JOB_TYPE = "tgms_send_to_groups"
# A row put back after temporary errors (5xx, network before sending) this often is given up on.
MAX_ATTEMPTS = 5
# Helper jobs per live TGMS worker, and at most in all: sending is paced by the shared limiter, so
# more senders only hide per-call latency.
SENDERS_PER_WORKER = 2
MAX_SENDERS = 8
# A helper landing on a process that already runs its share is passed on this often, then stays.
MAX_HOPS = 6
PASS_ON_DELAY = 0.05
_INFLIGHT_KEY = "group_sender.inflight"
_ACTIVE_KEY = "group_sender.active"

# ---------------------------------------------------------------- SQL

SQL_START = """
UPDATE broadcasts SET status = 'running', started_at = COALESCE(started_at, now())
 WHERE broadcast_id = %(b)s AND status = 'pending' AND (send_at IS NULL OR send_at <= now())
RETURNING target, is_final
"""

SQL_INSERT_TARGETS = """
INSERT INTO sent_messages (broadcast_id, chat_id, debug_code, status)
SELECT %(b)s, t.chat_id, 'B' || %(b)s::text || 'G' || t.n::text, 'pending'
  FROM unnest(%(ids)s::bigint[]) WITH ORDINALITY AS t(chat_id, n)
ON CONFLICT (broadcast_id, chat_id) DO NOTHING
"""

SQL_BROADCAST = """
SELECT broadcast_id, text, photo_url, caption, parse_mode, is_final, status, send_at
  FROM broadcasts WHERE broadcast_id = %(b)s
"""

SQL_LIVE_WORKERS = """
SELECT count(*) FROM bot_health
 WHERE bot_name = 'tgms_worker' AND status IN ('starting', 'running')
   AND updated_at > now() - make_interval(secs => %(stale)s)
"""

# Reserve the next pending row nobody else holds: not reserved, or reserved by a worker that is gone
# (no recent heartbeat) or long ago. A reservation only says "waiting for my rate-limit turn"; it is
# not an intent to send, so a crash while reserved leaves the row pending for someone else. RETURNING
# brings what decides whether the row may still be sent.
SQL_RESERVE = """
WITH next AS (
    SELECT s.message_id FROM sent_messages s
     WHERE s.broadcast_id = %(b)s AND s.status = 'pending'
       AND (s.locked_by IS NULL
            OR s.updated_at < now() - make_interval(secs => %(stale)s)
            OR NOT EXISTS (SELECT 1 FROM bot_health h
                            WHERE h.worker_id = s.locked_by AND h.status <> 'stopped'
                              AND h.updated_at > now() - make_interval(secs => %(stale)s)))
     ORDER BY s.message_id
     LIMIT 1
       FOR UPDATE SKIP LOCKED
)
UPDATE sent_messages AS s SET locked_by = %(worker)s, updated_at = now()
  FROM next
 WHERE s.message_id = next.message_id
RETURNING s.message_id, s.chat_id, s.debug_code,
          (SELECT status FROM broadcasts WHERE broadcast_id = %(b)s) AS broadcast_status,
          (SELECT is_active FROM managed_groups WHERE group_id = s.chat_id) AS is_active,
          (SELECT final_message_allowed FROM managed_groups WHERE group_id = s.chat_id) AS final_allowed
"""

# The intent to send, committed (autocommit) before the call: only by the reserver, only from
# 'pending', only while the broadcast runs. Whatever happened while we waited, one sender wins.
SQL_MARK_SENDING = """
UPDATE sent_messages
   SET status = 'sending', attempts = attempts + 1, updated_at = now()
 WHERE message_id = %(id)s AND status = 'pending' AND locked_by = %(worker)s
   AND EXISTS (SELECT 1 FROM broadcasts WHERE broadcast_id = %(b)s AND status = 'running')
RETURNING chat_id
"""

SQL_RELEASE = """
UPDATE sent_messages SET locked_by = NULL
 WHERE message_id = %(id)s AND status = 'pending' AND locked_by = %(worker)s
"""

SQL_BROADCAST_STATUS = "SELECT status FROM broadcasts WHERE broadcast_id = %(b)s"

SQL_SKIP_ROW = """
UPDATE sent_messages SET status = 'skipped', error = %(error)s, updated_at = now()
 WHERE message_id = %(id)s AND status IN ('pending', 'sending')
"""

SQL_REQUEUE_ROW = """
UPDATE sent_messages SET status = 'pending', locked_by = NULL, error = %(error)s, updated_at = now()
 WHERE message_id = %(id)s AND status = 'sending'
"""

# 429 and migration: the attempt did not happen as far as the group is concerned.
SQL_REQUEUE_UNCOUNTED = """
UPDATE sent_messages SET status = 'pending', locked_by = NULL, error = %(error)s,
       attempts = GREATEST(0, attempts - 1), updated_at = now()
 WHERE message_id = %(id)s AND status = 'sending'
"""

# Also over 'ambiguous': a sibling's sweep may have given up on us, but we know it went out.
SQL_SENT = """
WITH m AS (
    UPDATE sent_messages
       SET status = 'sent', telegram_message_id = %(tm)s, sent_at = now(), error = NULL, updated_at = now()
     WHERE message_id = %(id)s
    RETURNING chat_id
)
UPDATE managed_groups
   SET consecutive_failures = 0, last_broadcast_at = now(), updated_at = now()
 WHERE group_id = (SELECT chat_id FROM m)
"""

# The threshold check uses the row's old values: a group deactivates exactly when its count reaches
# the threshold, and an already inactive group (final broadcast) keeps its original reason.
SQL_DELIVERY_FAILED = """
WITH m AS (
    UPDATE sent_messages SET status = 'failed', error = %(error)s, updated_at = now()
     WHERE message_id = %(id)s
    RETURNING chat_id
)
UPDATE managed_groups AS g
   SET consecutive_failures = g.consecutive_failures + 1,
       is_active = g.is_active AND g.consecutive_failures + 1 < %(max)s,
       deactivated_reason = CASE WHEN g.is_active AND g.consecutive_failures + 1 >= %(max)s
                                 THEN %(reason)s ELSE g.deactivated_reason END,
       deactivated_at = CASE WHEN g.is_active AND g.consecutive_failures + 1 >= %(max)s
                             THEN now() ELSE g.deactivated_at END,
       updated_at = now()
 WHERE g.group_id = (SELECT chat_id FROM m)
RETURNING g.consecutive_failures, g.is_active
"""

SQL_FAILED_UNCOUNTED = """
UPDATE sent_messages SET status = %(status)s, error = %(error)s, updated_at = now()
 WHERE message_id = %(id)s
"""

SQL_SKIP_REMAINING = """
UPDATE sent_messages SET status = 'skipped', error = %(error)s, updated_at = now()
 WHERE broadcast_id = %(b)s AND status = 'pending'
"""

SQL_STOP_BROADCAST = """
UPDATE broadcasts SET status = %(status)s, error = %(error)s, finished_at = now()
 WHERE broadcast_id = %(b)s AND status IN ('pending', 'running')
"""

# 'sending' rows whose sender is gone: our own worker's rows no task of ours holds (a job that
# failed or was re-run), or rows of a worker without a recent heartbeat / that has stopped. A row
# just marked is left alone a moment: its worker may be so new that its first heartbeat is not in.
SQL_MARK_AMBIGUOUS = """
UPDATE sent_messages AS s
   SET status = 'ambiguous',
       error = 'worker ' || COALESCE(s.locked_by, '?') || ' stopped during the send: it may have been '
               || 'delivered, so it is not resent',
       updated_at = now()
 WHERE s.broadcast_id = %(b)s AND s.status = 'sending'
   AND CASE WHEN s.locked_by = %(me)s THEN NOT (s.message_id = ANY(%(mine)s))
            ELSE s.updated_at < now() - make_interval(secs => %(young)s)
                 AND NOT EXISTS (SELECT 1 FROM bot_health h
                                  WHERE h.worker_id = s.locked_by AND h.status <> 'stopped'
                                    AND h.updated_at > now() - make_interval(secs => %(stale)s)) END
RETURNING s.message_id, s.chat_id
"""

SQL_REMAINING = """
SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'sending')
  FROM sent_messages WHERE broadcast_id = %(b)s AND status IN ('pending', 'sending')
"""

SQL_FINISH = """
UPDATE broadcasts SET status = 'done', finished_at = now()
 WHERE broadcast_id = %(b)s AND status = 'running'
RETURNING broadcast_id
"""

# ---------------------------------------------------------------- message text


def debug_suffix(code: str, parse_mode: str | None) -> str:
    """The debug code as plain text in `parse_mode`. Codes are [A-Za-z0-9] (see SQL_INSERT_TARGETS), which
    no parse mode treats as markup; escaping anyway keeps this safe if the format ever changes."""
    if parse_mode == "MarkdownV2":
        return "".join("\\" + c if c in "_*[]()~`>#+-=|{}.!\\" else c for c in code)
    if parse_mode == "HTML":
        return html.escape(code, quote=False)
    if parse_mode == "Markdown":
        return "".join(c for c in code if c not in "_*`[]()\\")
    return code


def with_debug_code(body: str | None, code: str, parse_mode: str | None) -> str:
    """`body` with the debug code on its own paragraph after it: outside every entity of a valid text."""
    suffix = debug_suffix(code, parse_mode)
    if not body:
        return suffix
    return f"{body}\n\n{suffix}"


def shown_text(text: str, parse_mode: str | None) -> str:
    """What Telegram shows for valid `text` (markup removed)."""
    return _parsed_text(text, parse_mode)


def content_problem(body: str | None, code: str, parse_mode: str | None, *, caption: bool) -> str | None:
    """Why Telegram would reject `body` + `code` (markup, length), or None. Checked once per broadcast
    with its longest code, before anything is sent."""
    text = with_debug_code(body, code, parse_mode)
    what = "caption" if caption else "text"
    error = check_markup(text, parse_mode)
    if error is not None:
        return f"{what}: {error}"
    if not shown_text(text, parse_mode).rstrip().endswith(code):
        # e.g. legacy Markdown ending in "[link](" reads the rest of the text, the code too, as a URL.
        return f"{what}: the debug code would not be visible at its end (unfinished markup at the end?)"
    limit = CAPTION_LIMIT if caption else TEXT_LIMIT
    length = visible_length(text, parse_mode)
    if length > limit:
        kind = "message caption" if caption else "message"
        return f"{what}: {kind} is too long with the debug code appended ({length} characters, limit {limit})"
    return None


# ---------------------------------------------------------------- the sender


@dataclass(frozen=True)
class Broadcast:
    broadcast_id: int
    text: str | None
    photo_url: str | None
    caption: str | None
    parse_mode: str | None
    is_final: bool
    status: str
    send_at: datetime | None


@dataclass(frozen=True)
class Claimed:
    message_id: int
    chat_id: int
    debug_code: str


class _Stop(Exception):
    """The broadcast is no longer running: stop this sender."""


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
        inflight = ctx.services.setdefault(_INFLIGHT_KEY, set())
        assert isinstance(inflight, set)
        self.inflight: set[int] = inflight
        self.broadcast: Broadcast | None = None
        self.sent = 0

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        started_here = await self._start()
        broadcast = await self._load()
        if broadcast.status == "pending":
            if broadcast.send_at is not None and broadcast.send_at > datetime.now(UTC):
                wait = (broadcast.send_at - datetime.now(UTC)).total_seconds()
                raise Snooze(max(1.0, wait), "scheduled broadcast: not due yet")
            raise PermanentFailure(f"broadcast {self.broadcast_id} could not be started")
        if broadcast.status != "running":
            log.info("broadcast %d is %s: nothing to send", self.broadcast_id, broadcast.status)
            return
        self.broadcast = broadcast
        if not await self._validate():
            return
        if started_here or "helper" not in self.job.payload:
            await self._fan_out()
        active = self.ctx.services.setdefault(_ACTIVE_KEY, Counter())
        assert isinstance(active, Counter)
        crowded = "helper" in self.job.payload and active[self.broadcast_id] >= SENDERS_PER_WORKER
        if crowded and await self._pass_on():
            return
        active[self.broadcast_id] += 1
        try:
            await self._sweep_stale()
            with contextlib.suppress(_Stop):
                await self._send_all()
            await self._finish()
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
            cur = await conn.execute(SQL_START, {"b": self.broadcast_id})
            row = await cur.fetchone()
            if row is None:
                return False
            target, is_final = row
            ids = await resolve_targets(conn, target or {"kind": "all"}, bool(is_final))
            await conn.execute(SQL_INSERT_TARGETS, {"b": self.broadcast_id, "ids": ids})
        log.info("broadcast %d started: %d group(s)", self.broadcast_id, len(ids))
        return True

    async def _load(self) -> Broadcast:
        async with self.ctx.db.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(SQL_BROADCAST, {"b": self.broadcast_id})
            row = await cur.fetchone()
        if row is None:
            raise PermanentFailure(f"no broadcast {self.broadcast_id}")
        return Broadcast(**row)

    async def _validate(self) -> bool:
        """Catch what Telegram would reject in every group before the first send; stop if so."""
        b = self.broadcast
        assert b is not None
        async with self.ctx.db.connection() as conn:
            cur = await conn.execute(
                "SELECT debug_code FROM sent_messages WHERE broadcast_id = %s ORDER BY length(debug_code) DESC LIMIT 1",
                (self.broadcast_id,),
            )
            row = await cur.fetchone()
        code = row[0] if row else f"B{self.broadcast_id}G999"
        if b.photo_url is not None:
            problem = content_problem(b.caption, code, b.parse_mode, caption=True)
        else:
            problem = content_problem(b.text, code, b.parse_mode, caption=False)
        if problem is None:
            return True
        await self._stop_broadcast("stopped", f"content error before sending: {problem}")
        return False

    async def _fan_out(self) -> None:
        """Let other TGMS workers help: helper jobs with the same broadcast (one per dedupe key)."""
        async with self.ctx.db.connection() as conn:
            cur = await conn.execute(SQL_LIVE_WORKERS, {"stale": self.stale_seconds})
            row = await cur.fetchone()
            workers = max(1, int(row[0]) if row else 1)
            cur = await conn.execute(
                "SELECT count(*) FROM sent_messages WHERE broadcast_id = %s AND status = 'pending'",
                (self.broadcast_id,),
            )
            todo = await cur.fetchone()
            senders = min(MAX_SENDERS, SENDERS_PER_WORKER * workers, int(todo[0]) if todo else 0)
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
                cur = await conn.execute(SQL_REMAINING, {"b": self.broadcast_id})
                row = await cur.fetchone()
            pending, sending = row if row else (0, 0)
            if not pending and not sending:
                break
            if pending:
                # Put back by another sender (429, migration), or held by one waiting for its turn.
                try:
                    if await self._send_all():
                        continue
                except _Stop:
                    pass
            await asyncio.sleep(0.5)
        async with self.db.connection() as conn:
            cur = await conn.execute(SQL_FINISH, {"b": self.broadcast_id})
            finished = await cur.fetchone() is not None
        if finished:
            log.info("broadcast %d done", self.broadcast_id)

    async def _sweep_stale(self) -> None:
        async with self.db.connection() as conn:
            cur = await conn.execute(
                SQL_MARK_AMBIGUOUS,
                {
                    "b": self.broadcast_id,
                    "me": self.ctx.worker_id,
                    "mine": list(self.inflight),
                    "stale": self.stale_seconds,
                    "young": min(5.0, self.stale_seconds),
                },
            )
            rows = await cur.fetchall()
        for message_id, chat_id in rows:
            log.warning(
                "broadcast %d: send to %s (row %d) interrupted by a crash: marked ambiguous, not resent",
                self.broadcast_id,
                chat_id,
                message_id,
            )

    # ------------------------------------------------------------ sending

    async def _send_all(self) -> int:
        """Claim and send until no row is claimable; returns how many rows this call handled."""
        backoff = 0.0
        handled = 0
        while True:
            claimed = await self._claim()
            if claimed is None:
                return handled
            if claimed is _STOPPED:
                raise _Stop
            handled += 1
            if claimed is _SKIPPED:
                continue
            assert isinstance(claimed, Claimed)
            try:
                retry_later = await _finish_even_if_cancelled(self._deliver(claimed))
            finally:
                self.inflight.discard(claimed.message_id)
            if retry_later:
                backoff = min(30.0, max(1.0, backoff * 2))
                await asyncio.sleep(backoff)
            else:
                backoff = 0.0

    async def _claim(self) -> Claimed | object | None:
        """Reserve the next pending row, wait for the rate limiter, record the intent ('sending').
        Nothing is held open while we wait; a crash before the intent leaves the row pending."""
        b = self.broadcast
        assert b is not None
        params = {"b": self.broadcast_id, "worker": self.ctx.worker_id, "stale": self.stale_seconds}
        async with self.db.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(SQL_RESERVE, params)
            row = await cur.fetchone()
        if row is None:
            return None
        message_id = int(row["message_id"])
        if row["broadcast_status"] != "running":
            await self._write(
                SQL_SKIP_REMAINING, {"b": self.broadcast_id, "error": f"broadcast {row['broadcast_status']}"}
            )
            return _STOPPED
        if not (row["is_active"] or (b.is_final and row["final_allowed"])):
            reason = "group is no longer managed" if row["is_active"] is None else "group is inactive"
            await self._write(SQL_SKIP_ROW, {"id": message_id, "error": reason})
            return _SKIPPED
        marked = None
        try:
            await self.limiter.acquire(
                self.client.bot_key, int(row["chat_id"]), pace_key=f"broadcast:{self.broadcast_id}"
            )
            # In flight from the moment 'sending' can be seen: a sweep by another sender of this
            # process must not take our own row for a crashed one.
            self.inflight.add(message_id)
            async with self.db.connection() as conn:
                cur2 = await conn.execute(SQL_MARK_SENDING, {**params, "id": message_id})
                marked = await cur2.fetchone()
        finally:
            if marked is None:
                self.inflight.discard(message_id)
                await asyncio.shield(self._release(message_id))
        if marked is None:
            return _STOPPED if await self._status() != "running" else _SKIPPED
        return Claimed(message_id, int(marked[0]), str(row["debug_code"]))

    async def _release(self, message_id: int) -> None:
        """Give a reservation back (cancelled, or lost the row): best effort, it expires anyway."""
        with contextlib.suppress(psycopg.Error, OSError):
            async with self.db.connection() as conn:
                await conn.execute(SQL_RELEASE, {"id": message_id, "worker": self.ctx.worker_id})

    async def _status(self) -> str | None:
        async with self.db.connection() as conn:
            cur = await conn.execute(SQL_BROADCAST_STATUS, {"b": self.broadcast_id})
            row = await cur.fetchone()
        return str(row[0]) if row else None

    async def _deliver(self, row: Claimed) -> bool:
        """One send and its record. Returns True when the row went back to pending after a temporary
        error (the caller backs off)."""
        b = self.broadcast
        assert b is not None
        try:
            message = await self._call(row.chat_id, row.debug_code)
        except asyncio.CancelledError:
            await asyncio.shield(
                self._write(
                    SQL_FAILED_UNCOUNTED,
                    {
                        "id": row.message_id,
                        "status": "ambiguous",
                        "error": "cancelled while the request was in flight; may have been delivered, not resent",
                    },
                )
            )
            raise
        except RetryAfter as exc:
            # Pause the bot in the shared limiter (every process); the next claim waits it out.
            await self.limiter.pause(self.client.bot_key, exc.retry_after)
            await self._write(
                SQL_REQUEUE_UNCOUNTED,
                {
                    "id": row.message_id,
                    "error": f"429 from Telegram: retry after {exc.retry_after:g}s",
                },
            )
            return False
        except ChatMigrated as exc:
            await self._migrate(row, exc)
            return False
        except TelegramError as exc:
            return await self._failed(row, exc)
        except Exception as exc:
            # Not a Telegram answer (a bug, or something unexpected): we cannot know whether it went out.
            await self._write(
                SQL_FAILED_UNCOUNTED,
                {
                    "id": row.message_id,
                    "status": "ambiguous",
                    "error": f"{type(exc).__name__}: {exc}"[:1000],
                },
            )
            raise
        await self._write(SQL_SENT, {"id": row.message_id, "tm": message.get("message_id")})
        self.sent += 1
        return False

    async def _call(self, chat_id: int, code: str) -> Message:
        b = self.broadcast
        assert b is not None
        if b.photo_url is not None:
            caption = with_debug_code(b.caption, code, b.parse_mode)
            return await self.client.send_photo(chat_id, b.photo_url, caption=caption, parse_mode=b.parse_mode)
        text = with_debug_code(b.text, code, b.parse_mode)
        return await self.client.send_message(chat_id, text, parse_mode=b.parse_mode)

    async def _migrate(self, row: Claimed, exc: ChatMigrated) -> None:
        """Rewrite the group id everywhere (this row included) and put the row back to be sent to the
        new id; if the broadcast already has a row for the new id, this one was skipped instead."""

        async def work(conn: AsyncConnection[Any]) -> None:
            await rewrite_group_id(conn, row.chat_id, exc.new_chat_id)
            await conn.execute(SQL_REQUEUE_UNCOUNTED, {"id": row.message_id, "error": None})

        await self._with_conn(work, transaction=True)
        log.info(
            "broadcast %d: group %s migrated to %s; retrying there", self.broadcast_id, row.chat_id, exc.new_chat_id
        )

    async def _failed(self, row: Claimed, exc: TelegramError) -> bool:
        error = exc.description
        if exc.is_content_error:
            await self._write(SQL_FAILED_UNCOUNTED, {"id": row.message_id, "status": "failed", "error": error})
            await self._stop_broadcast("stopped", f"content error from Telegram: {error}")
            raise _Stop
        if isinstance(exc, Unauthorized):
            await self._write(SQL_FAILED_UNCOUNTED, {"id": row.message_id, "status": "failed", "error": error})
            await self._stop_broadcast("failed", f"the bot token was rejected: {error}")
            raise _Stop
        if isinstance(exc, Forbidden | ChatNotFound | ChatAdminRequired):
            await self._delivery_failed(row, error)
            return False
        if exc.maybe_delivered:
            await self._write(
                SQL_FAILED_UNCOUNTED,
                {
                    "id": row.message_id,
                    "status": "ambiguous",
                    "error": f"{error} (may have been delivered; not resent)",
                },
            )
            return False
        if exc.retryable:
            async with self.db.connection() as conn:
                cur = await conn.execute("SELECT attempts FROM sent_messages WHERE message_id = %s", (row.message_id,))
                attempts_row = await cur.fetchone()
            attempts = int(attempts_row[0]) if attempts_row else MAX_ATTEMPTS
            if attempts < MAX_ATTEMPTS:
                await self._write(SQL_REQUEUE_ROW, {"id": row.message_id, "error": error})
                return True
        await self._write(SQL_FAILED_UNCOUNTED, {"id": row.message_id, "status": "failed", "error": error})
        return False

    async def _delivery_failed(self, row: Claimed, error: str) -> None:
        reason = f"{self.max_failures} consecutive broadcast failures; last: {error}"
        result: list[Any] = []

        async def work(conn: AsyncConnection[Any]) -> None:
            cur = await conn.execute(
                SQL_DELIVERY_FAILED,
                {"id": row.message_id, "error": error, "max": self.max_failures, "reason": reason},
            )
            result.append(await cur.fetchone())

        await self._with_conn(work)
        counted = result[-1] if result else None
        if counted is not None and not counted[1]:
            log.warning("group %s deactivated after %s consecutive failures: %s", row.chat_id, counted[0], error)

    async def _stop_broadcast(self, status: str, error: str) -> None:
        async def work(conn: AsyncConnection[Any]) -> None:
            await conn.execute(SQL_STOP_BROADCAST, {"b": self.broadcast_id, "status": status, "error": error})
            await conn.execute(SQL_SKIP_REMAINING, {"b": self.broadcast_id, "error": f"broadcast {status}: {error}"})

        await self._with_conn(work, transaction=True)
        log.warning("broadcast %d %s: %s", self.broadcast_id, status, error)

    # ------------------------------------------------------------ database writes that must land

    async def _write(self, sql: str, params: dict[str, Any]) -> None:
        async def work(conn: AsyncConnection[Any]) -> None:
            await conn.execute(sql, params)

        await self._with_conn(work)

    async def _with_conn(
        self, work: Callable[[AsyncConnection[Any]], Awaitable[None]], *, transaction: bool = False
    ) -> None:
        """Run `work` (in one transaction if asked: the pool is autocommit), retrying through a
        database outage for up to a lease: the outcome of a call that reached Telegram must not be lost."""
        deadline = time.monotonic() + self.stale_seconds
        failures = 0
        while True:
            try:
                async with self.db.connection() as conn:
                    if transaction:
                        async with conn.transaction():
                            await work(conn)
                    else:
                        await work(conn)
                return
            except psycopg.OperationalError:
                failures += 1
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(min(2.0, 0.1 * 2**failures))


_SKIPPED = object()
_STOPPED = object()


async def _finish_even_if_cancelled(step: Awaitable[bool]) -> bool:
    """Await `step` to the end even if our task is cancelled (graceful shutdown), then re-raise the
    cancellation: a send in flight is recorded rather than left ambiguous."""
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


__all__ = ["JOB_TYPE", "GroupSender", "content_problem", "debug_suffix", "send_to_groups", "with_debug_code"]
