"""The event-webhook repository: subscriptions, the event outbox, deliveries and their attempts.

Events are written in the transaction of the change they describe: triggers of migration 020 for
group registration, (de)activation and member counts, broadcast completion and join-request
decisions; `emit` here for what no single row carries (a group's migration, the daily fleet summary,
a test ping). Each event is queued for every active subscription that asks for its type.

Delivery (workers/hooks.py) drains one lane — a subscription and a group, or the fleet — at a time,
oldest first: `next_delivery` hands out the lane's head only, `record_attempt` stores the outcome.
A failed head is retried with exponential backoff and holds its lane (order before throughput); once
its first attempt is `GIVE_UP_SECONDS` old (database time), the subscription becomes 'failing': paused,
its pending deliveries given up, until an operator resumes it and replays what it missed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Json

from . import hook_targets

JOB_TYPE = "tgms_deliver_hooks"
DAILY_JOB = "tgms_hooks_daily"
SWEEP_JOB = "tgms_hooks_sweep"
VERSION = 1
EVENT_TYPES = (
    "group.member_count",
    "group.registered",
    "group.deactivated",
    "group.reactivated",
    "group.migrated",
    "broadcast.finished",
    "join_request.decided",
    "fleet.daily",
)
# High volume: only subscriptions that name it get it (never part of "all").
OPT_IN_EVENTS = ("join_request.decided",)
DEFAULT_EVENTS = tuple(e for e in EVENT_TYPES if e not in OPT_IN_EVENTS)
TEST_EVENT = "hook.test"
STATUSES = ("active", "paused", "failing")
FLEET_LANE = "fleet"
GIVE_UP_SECONDS = 24 * 3600.0
RETENTION_DAYS = 30
PRUNE_BATCH = 10_000  # the LIMIT of SQL_PRUNE_EVENTS
RETRY_BASE_SECONDS = 2.0
RETRY_CAP_SECONDS = 3600.0
FAILING_REASON = "receiver failed for 24 hours; paused (resume, then replay what it missed)"


class HookError(Exception):
    """A request TGMS refuses; `field` names the offending input (url, events, since, ...)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def retry_delay(attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: 2, 4, 8 ... capped at an hour, with ±20 % jitter."""
    raw = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return raw * random.uniform(0.8, 1.2)


def parse_events(raw: str | list[str] | None) -> list[str]:
    """`--events` / the API's `events`: names separated by commas, or "all" (every type but the
    opt-in ones); None gives the same as "all"."""
    if raw is None:
        return list(DEFAULT_EVENTS)
    names = [n.strip() for n in (raw.split(",") if isinstance(raw, str) else raw) if isinstance(n, str)]
    if isinstance(raw, list) and len(names) != len(raw):
        raise HookError("events must be a list of event type names", "events")
    chosen: list[str] = []
    for name in names:
        if not name:
            continue
        expanded = list(DEFAULT_EVENTS) if name == "all" else [name]
        for event in expanded:
            if event not in EVENT_TYPES:
                raise HookError(f"unknown event type {name!r} (known: all, {', '.join(EVENT_TYPES)})", "events")
            if event not in chosen:
                chosen.append(event)
    if not chosen:
        raise HookError("events is empty", "events")
    return chosen


_AGO = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_moment(text: str | None, field: str, now: datetime | None = None) -> datetime | None:
    """`--since` / `--until`: a duration ago (`90m`, `2h`, `7d`) or an ISO-8601 time (UTC when it
    names no timezone); None or empty stays None."""
    if text is None or not str(text).strip():
        return None
    if not isinstance(text, str):
        raise HookError(f"{field} must be a string: a duration ago (2h) or an ISO-8601 time", field)
    now = now or datetime.now(UTC)
    match = _AGO.match(text)
    if match:
        return now - timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2).lower()])
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        problem = f"{field}: {text!r} is neither a duration ago (30m, 2h, 7d) nor an ISO-8601 time"
        raise HookError(problem, field) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_id(value: Any, field: str) -> int:
    """A subscription or delivery id: a positive integer."""
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise HookError(f"{field} must be a positive integer", field) from None
    if isinstance(value, bool) or not 0 < number < 1 << 62:
        raise HookError(f"{field} must be a positive integer", field)
    return number


# ------------------------------------------------------------------------------------------ SQL

SQL_ADD = """
INSERT INTO hook_subscriptions (url, events, secret, created_by) VALUES (%(url)s, %(events)s, %(secret)s, %(by)s)
RETURNING subscription_id
"""

SQL_LIST = """
SELECT s.subscription_id, s.url, s.events, s.status, s.status_reason, s.created_by, s.created_at,
       (SELECT count(*) FROM hook_deliveries d WHERE d.subscription_id = s.subscription_id
                                               AND d.status IN ('pending', 'sending')) AS pending,
       (SELECT count(*) FROM hook_deliveries d WHERE d.subscription_id = s.subscription_id
                                               AND d.status = 'delivered'
                                               AND d.delivered_at > now() - interval '24 hours') AS delivered_24h,
       (SELECT count(*) FROM hook_deliveries d WHERE d.subscription_id = s.subscription_id
                                               AND d.status IN ('pending', 'sending')
                                               AND d.attempts > 0) AS retrying,
       (SELECT max(d.delivered_at) FROM hook_deliveries d WHERE d.subscription_id = s.subscription_id
                                                            AND d.status = 'delivered') AS last_delivered_at
  FROM hook_subscriptions s
 ORDER BY s.subscription_id
"""

SQL_REMOVE = "DELETE FROM hook_subscriptions WHERE subscription_id = %s RETURNING subscription_id"

SQL_SET_STATUS = """
UPDATE hook_subscriptions SET status = %(status)s, status_reason = %(reason)s, updated_at = now()
 WHERE subscription_id = %(sub)s
RETURNING subscription_id
"""

# Resuming: every lane with deliveries waiting gets a drainer.
SQL_WAKE_LANES = """
INSERT INTO hook_lanes AS l (subscription_id, lane, scheduled)
SELECT DISTINCT subscription_id, lane, true FROM hook_deliveries
 WHERE subscription_id = %(sub)s AND status IN ('pending', 'sending')
ON CONFLICT (subscription_id, lane) DO UPDATE SET scheduled = true WHERE NOT l.scheduled
RETURNING lane
"""

SQL_ENQUEUE_DRAINER = """
INSERT INTO jobs (job_type, payload, priority, max_retries)
VALUES ('tgms_deliver_hooks', jsonb_build_object('subscription_id', %(sub)s::bigint, 'lane', %(lane)s::text), 5, 20)
"""

SQL_EMIT = "SELECT tgms_hook_emit(%(type)s, %(lane)s, %(data)s)"
SQL_MIGRATING = "SELECT set_config('tgms.hooks_migrating', %s, true)"

SQL_TEST_EVENT = """
INSERT INTO hook_events (event_id, event_type, lane, occurred_at, body)
SELECT id, %(type)s::text, 'test', now(),
       json_build_object('version', %(version)s::int, 'id', id, 'type', %(type)s::text,
                         'occurred_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                         'data', json_build_object('subscription_id', %(sub)s::bigint))::text
  FROM (SELECT gen_random_uuid() AS id) AS g
RETURNING event_id
"""

SQL_DELIVER = "SELECT tgms_hook_deliver(%(sub)s, %(event)s, %(replay_of)s)"

SQL_DELIVERY_SUB_EVENT = "SELECT subscription_id, event_id FROM hook_deliveries WHERE delivery_id = %s"

SQL_RANGE_EVENTS = """
SELECT e.event_id FROM hook_events e, hook_subscriptions s
 WHERE s.subscription_id = %(sub)s AND e.event_type = ANY (s.events)
   AND e.occurred_at >= %(since)s AND e.occurred_at < %(until)s
 ORDER BY e.occurred_at, e.seq
"""


SQL_NEXT = "SELECT * FROM tgms_hook_next(%(sub)s, %(lane)s, %(lease)s)"

# One attempt's outcome in one statement (one round trip on an autocommit connection): the attempt
# row; the delivery delivered, due again after `delay`, or given up once its first attempt is
# `give_up` seconds old — and then the subscription 'failing' and its other pending deliveries given up.
SQL_RECORD = """
WITH d AS (
    UPDATE hook_deliveries
       SET status = CASE WHEN %(ok)s THEN 'delivered'
                         WHEN now() - first_attempt_at >= make_interval(secs => %(give_up)s) THEN 'failed'
                         ELSE 'pending' END,
           delivered_at = CASE WHEN %(ok)s THEN now() END,
           next_attempt_at = CASE WHEN %(ok)s THEN next_attempt_at
                                  ELSE now() + make_interval(secs => %(delay)s) END,
           lease_until = NULL, last_status_code = %(code)s, last_latency_ms = %(latency)s, last_error = %(error)s
     WHERE delivery_id = %(id)s AND status = 'sending' AND attempts = %(attempt)s
    RETURNING status, subscription_id
), attempt AS (
    INSERT INTO hook_attempts (delivery_id, attempt, started_at, latency_ms, status_code, error)
    VALUES (%(id)s, %(attempt)s, now() - make_interval(secs => %(latency)s / 1000.0), %(latency)s, %(code)s,
            %(error)s)
    ON CONFLICT (delivery_id, attempt) DO NOTHING
), failing AS (
    UPDATE hook_subscriptions AS s SET status = 'failing', status_reason = %(reason)s, updated_at = now()
      FROM d
     WHERE d.status = 'failed' AND s.subscription_id = d.subscription_id AND s.status = 'active'
), given_up AS (
    UPDATE hook_deliveries AS x
       SET status = 'failed', lease_until = NULL,
           last_error = COALESCE(x.last_error || '; ', '') || 'given up: subscription paused as failing'
      FROM d
     WHERE d.status = 'failed' AND x.subscription_id = d.subscription_id AND x.delivery_id <> %(id)s
       AND x.status IN ('pending', 'sending')
)
SELECT status FROM d
"""


SQL_DELIVERIES = """
SELECT d.delivery_id, d.subscription_id, d.event_id::text, d.event_type, d.lane, d.status, d.attempts,
       d.last_status_code, d.last_latency_ms, d.last_error, d.created_at, d.last_attempt_at, d.delivered_at,
       d.next_attempt_at, d.replay_of
  FROM hook_deliveries d
 WHERE (%(sub)s::bigint IS NULL OR d.subscription_id = %(sub)s)
   AND (%(status)s::text IS NULL OR d.status = %(status)s)
 ORDER BY d.delivery_id DESC
 LIMIT %(limit)s
"""

SQL_DELIVERY = SQL_DELIVERIES.replace(
    "WHERE (%(sub)s::bigint IS NULL", "WHERE d.delivery_id = %(id)s AND (%(sub)s::bigint IS NULL"
)

SQL_ATTEMPTS = """
SELECT attempt, started_at, latency_ms, status_code, error FROM hook_attempts
 WHERE delivery_id = %s ORDER BY attempt
"""

SQL_DAILY = """
SELECT json_build_object(
    'since', to_char((now() - interval '24 hours') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'until', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
    'groups', (SELECT json_build_object('total', count(*), 'active', count(*) FILTER (WHERE is_active),
                                        'inactive', count(*) FILTER (WHERE NOT is_active),
                                        'members', COALESCE(sum(member_count), 0))
                 FROM managed_groups),
    'join_requests', COALESCE((SELECT json_object_agg(status, n) FROM (
                        SELECT status, count(*) AS n FROM join_requests
                         WHERE processed_at > now() - interval '24 hours' GROUP BY status) AS j), '{}'::json),
    'broadcasts_finished', (SELECT count(*) FROM broadcasts
                             WHERE finished_at > now() - interval '24 hours'
                               AND status IN ('done', 'stopped', 'failed', 'cancelled')))
"""

SQL_PRUNE_EVENTS = """
WITH old AS (
    SELECT event_id FROM hook_events WHERE occurred_at < now() - make_interval(secs => %(days)s * 86400) LIMIT 10000
)
DELETE FROM hook_events WHERE event_id IN (SELECT event_id FROM old)
"""

# A lane marked scheduled whose drainer job is gone (failed after its retries, cancelled by an
# operator, pruned) would wait for ever: give it a new one. A lane whose drainer is being enqueued
# right now is locked by that transaction and skipped.
SQL_SWEEP = """
WITH orphan AS (
    SELECT l.subscription_id, l.lane FROM hook_lanes l
     WHERE l.scheduled
       AND NOT EXISTS (SELECT 1 FROM jobs j
                        WHERE j.job_type = 'tgms_deliver_hooks' AND j.status IN ('pending', 'running')
                          AND j.payload @> jsonb_build_object('subscription_id', l.subscription_id, 'lane', l.lane))
       FOR UPDATE OF l SKIP LOCKED
)
INSERT INTO jobs (job_type, payload, priority, max_retries)
SELECT 'tgms_deliver_hooks', jsonb_build_object('subscription_id', subscription_id, 'lane', lane), 5, 20 FROM orphan
RETURNING job_id
"""

SQL_NOW = "SELECT now()"


# ------------------------------------------------------------------------------------------ types


@dataclass(frozen=True)
class Subscription:
    subscription_id: int
    url: str
    events: list[str]
    status: str
    status_reason: str | None
    created_by: str | None
    created_at: datetime
    pending: int
    delivered_24h: int
    retrying: int
    last_delivered_at: datetime | None

    @property
    def state(self) -> str:
        """What an operator sees: paused / failing, or active (retrying while its head fails)."""
        return "active (retrying)" if self.status == "active" and self.retrying else self.status

    def as_json(self) -> dict[str, Any]:
        """Everything but the secret, which only `add` ever returns."""
        return {
            "subscription_id": self.subscription_id,
            "url": self.url,
            "events": list(self.events),
            "status": self.status,
            "status_reason": self.status_reason,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "pending": self.pending,
            "retrying": self.retrying,
            "delivered_24h": self.delivered_24h,
            "last_delivered_at": self.last_delivered_at.isoformat() if self.last_delivered_at else None,
        }


@dataclass(frozen=True)
class Delivery:
    delivery_id: int
    subscription_id: int
    event_id: str
    event_type: str
    lane: str
    status: str
    attempts: int
    last_status_code: int | None
    last_latency_ms: float | None
    last_error: str | None
    created_at: datetime
    last_attempt_at: datetime | None
    delivered_at: datetime | None
    next_attempt_at: datetime
    replay_of: int | None

    def as_json(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "delivery_id": self.delivery_id,
            "subscription_id": self.subscription_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "lane": self.lane,
            "status": self.status,
            "attempts": self.attempts,
            "status_code": self.last_status_code,
            "latency_ms": None if self.last_latency_ms is None else round(self.last_latency_ms, 1),
            "error": self.last_error,
            "created_at": iso(self.created_at),
            "last_attempt_at": iso(self.last_attempt_at),
            "delivered_at": iso(self.delivered_at),
            "next_attempt_at": iso(self.next_attempt_at) if self.status == "pending" else None,
            "replay_of": self.replay_of,
        }


@dataclass(frozen=True)
class Attempt:
    attempt: int
    started_at: datetime
    latency_ms: float | None
    status_code: int | None
    error: str | None


@dataclass(frozen=True)
class Send:
    """The lane's head, leased to the caller for one attempt."""

    delivery_id: int
    attempt: int
    event_type: str
    body: bytes = field(repr=False)
    url: str
    secret: str = field(repr=False)  # never in a log line or an error


@dataclass(frozen=True)
class Wait:
    """The lane's head is not due (backoff) or is being sent by someone else: look again later."""

    seconds: float


IDLE = None
Step = Send | Wait | None


# ------------------------------------------------------------------------------------------ subscriptions


async def check_url(url: str, *, allow_private: bool) -> None:
    """A receiver URL TGMS would deliver to now (its host resolved, every address checked)."""
    try:
        await hook_targets.resolve(url, allow_private=allow_private)
    except hook_targets.TargetRefused as exc:
        raise HookError(str(exc), "url") from None


async def add(
    conn: AsyncConnection[Any],
    url: str,
    events: list[str],
    created_by: str,
    *,
    allow_private: bool,
    checked: bool = False,
) -> tuple[int, str]:
    """Create a subscription; returns (id, secret). The URL is checked now (as at every delivery)
    unless the caller just did (`checked`: without holding a connection during the DNS lookup)."""
    if not checked:
        await check_url(url, allow_private=allow_private)
    secret = hook_targets.new_secret()
    cur = await conn.execute(SQL_ADD, {"url": url, "events": events, "secret": secret, "by": created_by})
    row = await cur.fetchone()
    assert row is not None
    return int(row[0]), secret


async def list_subscriptions(conn: AsyncConnection[Any]) -> list[Subscription]:
    cur = await conn.execute(SQL_LIST)
    return [Subscription(*row) for row in await cur.fetchall()]


async def get(conn: AsyncConnection[Any], subscription_id: int) -> Subscription | None:
    return next((s for s in await list_subscriptions(conn) if s.subscription_id == subscription_id), None)


async def remove(conn: AsyncConnection[Any], subscription_id: int) -> bool:
    """Delete a subscription with its deliveries (its drainer jobs then find nothing to do)."""
    cur = await conn.execute(SQL_REMOVE, (subscription_id,))
    return await cur.fetchone() is not None


async def pause(conn: AsyncConnection[Any], subscription_id: int, reason: str = "paused by an operator") -> bool:
    cur = await conn.execute(SQL_SET_STATUS, {"status": "paused", "reason": reason, "sub": subscription_id})
    return await cur.fetchone() is not None


async def resume(conn: AsyncConnection[Any], subscription_id: int) -> bool:
    """Active again: the deliveries that waited go out (a failing one's were given up: replay them)."""
    cur = await conn.execute(SQL_SET_STATUS, {"status": "active", "reason": None, "sub": subscription_id})
    if await cur.fetchone() is None:
        return False
    await _wake(conn, subscription_id)
    return True


async def _wake(conn: AsyncConnection[Any], subscription_id: int) -> None:
    cur = await conn.execute(SQL_WAKE_LANES, {"sub": subscription_id})
    for (lane,) in await cur.fetchall():
        await conn.execute(SQL_ENQUEUE_DRAINER, {"sub": subscription_id, "lane": lane})


# ------------------------------------------------------------------------------------------ events


async def emit(conn: AsyncConnection[Any], event_type: str, lane: str, data: dict[str, Any]) -> str | None:
    """Record an event in the caller's transaction and queue it for its subscribers; its id, or None
    when no subscription asks for this type."""
    cur = await conn.execute(SQL_EMIT, {"type": event_type, "lane": lane, "data": Json(data)})
    row = await cur.fetchone()
    return None if row is None or row[0] is None else str(row[0])


async def quiet_group_triggers(conn: AsyncConnection[Any], old_id: int | None) -> None:
    """Inside a group's id rewrite (which emits group.migrated itself): the rows it moves must not
    look like a group registered (the new id) or (de)activated. None ends the quiet part (the
    setting lasts to the end of the whole transaction otherwise, a caller's included)."""
    await conn.execute(SQL_MIGRATING, ("" if old_id is None else str(old_id),))


async def send_test(conn: AsyncConnection[Any], subscription_id: int) -> int:
    """Queue a `hook.test` event for one subscription (whatever its event types); the delivery id."""
    if await get(conn, subscription_id) is None:
        raise HookError(f"no subscription {subscription_id}", "subscription_id")
    params = {"type": TEST_EVENT, "version": VERSION, "sub": subscription_id}
    cur = await conn.execute(SQL_TEST_EVENT, params)
    row = await cur.fetchone()
    assert row is not None
    return await _deliver(conn, subscription_id, row[0], None)


async def _deliver(conn: AsyncConnection[Any], subscription_id: int, event_id: Any, replay_of: int | None) -> int:
    cur = await conn.execute(SQL_DELIVER, {"sub": subscription_id, "event": event_id, "replay_of": replay_of})
    row = await cur.fetchone()
    assert row is not None and row[0] is not None
    return int(row[0])


async def replay(conn: AsyncConnection[Any], delivery_id: int) -> int:
    """Send one delivery's event again (same body, same event id, a new delivery id); the new id."""
    cur = await conn.execute(SQL_DELIVERY_SUB_EVENT, (delivery_id,))
    row = await cur.fetchone()
    if row is None:
        raise HookError(f"no delivery {delivery_id}", "delivery_id")
    return await _deliver(conn, int(row[0]), row[1], delivery_id)


async def replay_range(conn: AsyncConnection[Any], subscription_id: int, since: datetime, until: datetime) -> int:
    """Queue again every event of the subscription's types that occurred in [since, until), in the
    order they occurred; how many."""
    if until <= since:
        raise HookError("until must be later than since", "until")
    if await get(conn, subscription_id) is None:
        raise HookError(f"no subscription {subscription_id}", "subscription_id")
    cur = await conn.execute(SQL_RANGE_EVENTS, {"sub": subscription_id, "since": since, "until": until})
    events = [row[0] for row in await cur.fetchall()]
    for event_id in events:
        await _deliver(conn, subscription_id, event_id, None)
    return len(events)


async def daily_summary(conn: AsyncConnection[Any]) -> str | None:
    """Emit fleet.daily (the last 24 hours) and forget events past the retention period."""
    cur = await conn.execute(SQL_DAILY)
    row = await cur.fetchone()
    assert row is not None
    event_id = await emit(conn, "fleet.daily", FLEET_LANE, row[0])
    await prune(conn)
    return event_id


async def prune(conn: AsyncConnection[Any], days: float = RETENTION_DAYS) -> int:
    """Forget events older than `days` with their deliveries and attempts, in batches (no statement
    holds its locks for long); how many events went."""
    total = 0
    while True:
        cur = await conn.execute(SQL_PRUNE_EVENTS, {"days": days})
        total += cur.rowcount
        if cur.rowcount < PRUNE_BATCH:
            return total


# ------------------------------------------------------------------------------------------ delivery


async def sweep_lanes(conn: AsyncConnection[Any]) -> int:
    """New drainers for scheduled lanes that lost theirs (SQL_SWEEP); how many."""
    cur = await conn.execute(SQL_SWEEP)
    return len(await cur.fetchall())


async def next_delivery(conn: AsyncConnection[Any], subscription_id: int, lane: str, lease_seconds: float) -> Step:
    """In one round trip (tgms_hook_next, migration 020): the lane's head leased for one attempt
    (Send), a Wait, or IDLE when the lane is empty or its subscription is not active (its drainer
    then stops; a new delivery or a resume schedules another)."""
    cur = await conn.execute(SQL_NEXT, {"sub": subscription_id, "lane": lane, "lease": lease_seconds})
    row = await cur.fetchone()
    assert row is not None
    kind, delivery_id, attempt, event_type, body, url, secret, wait = row
    if kind == "idle":
        return IDLE
    if kind == "wait":
        return Wait(float(wait))
    return Send(int(delivery_id), int(attempt), str(event_type), str(body).encode(), str(url), str(secret))


@dataclass(frozen=True)
class Outcome:
    status: str  # delivered, retry, failing (the subscription was paused), lost (lease lost)
    delay: float = 0.0


async def record_attempt(
    conn: AsyncConnection[Any],
    send: Send,
    *,
    ok: bool,
    status_code: int | None,
    latency_ms: float,
    error: str | None,
) -> Outcome:
    """Store one attempt's outcome (one statement: SQL_RECORD); after 24 hours of failures the
    subscription becomes 'failing'."""
    delay = retry_delay(send.attempt)
    params = {
        "id": send.delivery_id,
        "attempt": send.attempt,
        "ok": ok,
        "code": status_code,
        "latency": latency_ms,
        "error": None if error is None else error[:500],
        "delay": delay,
        "give_up": GIVE_UP_SECONDS,
    }
    cur = await conn.execute(SQL_RECORD, {**params, "reason": FAILING_REASON})
    row = await cur.fetchone()
    if row is None:
        return Outcome("lost")
    if row[0] == "delivered":
        return Outcome("delivered")
    if row[0] == "pending":
        return Outcome("retry", delay)
    return Outcome("failing")


# ------------------------------------------------------------------------------------------ reading


async def deliveries(
    conn: AsyncConnection[Any], *, subscription_id: int | None = None, status: str | None = None, limit: int = 100
) -> list[Delivery]:
    """The delivery log, newest first."""
    cur = await conn.execute(SQL_DELIVERIES, {"sub": subscription_id, "status": status, "limit": limit})
    return [Delivery(*row) for row in await cur.fetchall()]


async def delivery(conn: AsyncConnection[Any], delivery_id: int) -> Delivery | None:
    cur = await conn.execute(SQL_DELIVERY, {"id": delivery_id, "sub": None, "status": None, "limit": 1})
    row = await cur.fetchone()
    return None if row is None else Delivery(*row)


async def attempts(conn: AsyncConnection[Any], delivery_id: int) -> list[Attempt]:
    cur = await conn.execute(SQL_ATTEMPTS, (delivery_id,))
    return [Attempt(*row) for row in await cur.fetchall()]


async def db_now(conn: AsyncConnection[Any]) -> datetime:
    cur = await conn.execute(SQL_NOW)
    row = await cur.fetchone()
    assert row is not None
    moment: datetime = row[0]
    return moment
