"""The analytics repository: chart series per group and for the whole fleet, and their rollups.

Four figures over a window (24 h in hourly buckets, 7 d in 6-hour buckets, 30 d in daily buckets,
all aligned on UTC): member count (each bucket's last reading, carried forward), join requests decided
per bucket by outcome, broadcast copies delivered and failed per bucket, and active members (seen in
the 24 hours before a snapshot).

One group's series read its raw rows through indexes (at most one reading per hour, so a 30-day window
is ~720 index entries). The fleet's series cannot: summing 10,000 groups' last readings for every
bucket is millions of rows. So the `analytics_rollup` job keeps one row per hour in
`analytics_fleet_hourly`, and the fleet's series read the complete rolled hours plus a short live
tail (the hours since the last complete one, at most TAIL_CAP) from the raw tables. Active members
cannot be recomputed for the past at all (member_activity keeps only the last sighting), so the job
takes a snapshot: per group per UTC day (`analytics_group_daily`) and for the fleet per hour.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection

ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)  # buckets are aligned on UTC midnight (date_bin's origin)
HOUR = timedelta(hours=1)
ACTIVE_SPAN = timedelta(hours=24)
PRESENT = ["member", "administrator", "creator", "restricted"]  # member_activity statuses still in the group
TAIL_CAP = timedelta(hours=48)  # the fleet's live tail never reads more raw history than this
MAX_HOURS_PER_ROLLUP = 168  # a catch-up (first run, workers down for days) spreads over several runs
ROLLUP_DAYS = 30  # the longest window: older hours are never rolled up

ROLLUP_JOB = "analytics_rollup"
ROLLUP_EVERY_SECONDS = 600.0


class UnknownWindow(ValueError):
    """A window name other than 24h, 7d or 30d."""


@dataclass(frozen=True, slots=True)
class Window:
    name: str
    span: timedelta
    bucket: timedelta
    bucket_label: str

    @property
    def buckets(self) -> int:
        return int(self.span / self.bucket)

    def starts(self, now: datetime) -> list[datetime]:
        """The buckets' starts, oldest first; the last one holds `now`."""
        last = ORIGIN + ((now - ORIGIN) // self.bucket) * self.bucket
        return [last - (self.buckets - 1 - i) * self.bucket for i in range(self.buckets)]


WINDOWS: dict[str, Window] = {
    "24h": Window("24h", timedelta(hours=24), timedelta(hours=1), "hour"),
    "7d": Window("7d", timedelta(days=7), timedelta(hours=6), "6 hours"),
    "30d": Window("30d", timedelta(days=30), timedelta(days=1), "day"),
}


def window(name: str) -> Window:
    try:
        return WINDOWS[name]
    except KeyError:
        raise UnknownWindow(f"unknown window {name!r} (choose {', '.join(WINDOWS)})") from None


@dataclass(slots=True)
class Series:
    """The four figures of one scope (a group, or the fleet when `group_id` is None) per bucket."""

    group_id: int | None
    window: Window
    now: datetime
    starts: list[datetime]
    members: list[int | None] = field(default_factory=list)
    joins_approved: list[int] = field(default_factory=list)
    joins_declined: list[int] = field(default_factory=list)
    joins_other: list[int] = field(default_factory=list)
    deliveries_sent: list[int] = field(default_factory=list)
    deliveries_failed: list[int] = field(default_factory=list)
    active_members: list[int | None] = field(default_factory=list)

    COLUMNS = (
        "bucket_start",
        "members",
        "joins_approved",
        "joins_declined",
        "joins_other",
        "deliveries_sent",
        "deliveries_failed",
        "active_members",
    )

    def rows(self) -> list[dict[str, Any]]:
        return [
            {
                "bucket_start": start.isoformat(),
                "members": self.members[i],
                "joins_approved": self.joins_approved[i],
                "joins_declined": self.joins_declined[i],
                "joins_other": self.joins_other[i],
                "deliveries_sent": self.deliveries_sent[i],
                "deliveries_failed": self.deliveries_failed[i],
                "active_members": self.active_members[i],
            }
            for i, start in enumerate(self.starts)
        ]

    def totals(self) -> dict[str, int | None]:
        """Sums over the window for the per-bucket counts; the last known value for the levels."""
        members = [m for m in self.members if m is not None]
        active = [a for a in self.active_members if a is not None]
        return {
            "members": members[-1] if members else None,
            "members_change": members[-1] - members[0] if members else None,
            "joins_approved": sum(self.joins_approved),
            "joins_declined": sum(self.joins_declined),
            "joins_other": sum(self.joins_other),
            "deliveries_sent": sum(self.deliveries_sent),
            "deliveries_failed": sum(self.deliveries_failed),
            "active_members": active[-1] if active else None,
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "scope": "fleet" if self.group_id is None else "group",
            "group_id": self.group_id,
            "window": self.window.name,
            "bucket": self.window.bucket_label,
            "generated_at": self.now.isoformat(),
            "totals": self.totals(),
            "buckets": self.rows(),
        }

    def as_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(self.COLUMNS), lineterminator="\n")
        writer.writeheader()
        for row in self.rows():
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
        return out.getvalue()


# ---------------------------------------------------------------- one group (raw rows, by index)
# The last reading in each bucket, and the last one before the window (carried into its first buckets).
SQL_GROUP_MEMBERS = """
SELECT b, member_count FROM (
    SELECT DISTINCT ON (b) date_bin(%(width)s, recorded_at, %(origin)s) AS b, member_count
      FROM member_count_history
     WHERE group_id = %(group)s AND recorded_at >= %(start)s AND recorded_at < %(end)s
     ORDER BY b, recorded_at DESC
) AS last_in_bucket
UNION ALL
(SELECT NULL, member_count FROM member_count_history
  WHERE group_id = %(group)s AND recorded_at < %(start)s
  ORDER BY recorded_at DESC LIMIT 1)
"""

_OUTCOMES = """count(*) FILTER (WHERE status = 'approved'),
       count(*) FILTER (WHERE status = 'declined'),
       count(*) FILTER (WHERE status NOT IN ('approved', 'declined'))"""

SQL_GROUP_JOINS = f"""
SELECT date_bin(%(width)s, processed_at, %(origin)s) AS b, {_OUTCOMES}
  FROM join_requests
 WHERE chat_id = %(group)s AND processed_at >= %(start)s AND processed_at < %(end)s
 GROUP BY 1
"""

# A delivered copy counts when it was sent, a failed one when it failed (its last update).
_DONE_AT = "CASE WHEN status = 'sent' THEN sent_at ELSE updated_at END"
SQL_GROUP_DELIVERIES = f"""
SELECT date_bin(%(width)s, {_DONE_AT}, %(origin)s) AS b,
       count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed')
  FROM sent_messages
 WHERE chat_id = %(group)s AND status IN ('sent', 'failed')
   AND {_DONE_AT} >= %(start)s AND {_DONE_AT} < %(end)s
 GROUP BY 1
"""

SQL_GROUP_ACTIVE = """
SELECT day, active_members FROM analytics_group_daily
 WHERE group_id = %(group)s AND day >= %(first_day)s AND day <= %(last_day)s
"""

SQL_GROUP_ACTIVE_NOW = """
SELECT count(*) FROM member_activity
 WHERE chat_id = %(group)s AND last_seen_at >= %(since)s AND status = ANY(%(present)s)
"""

# ---------------------------------------------------------------- the fleet (rollup + live tail)
SQL_FLEET_ROLLUP = """
SELECT date_bin(%(width)s, hour, %(origin)s) AS b,
       (array_agg(members ORDER BY hour DESC))[1],
       sum(joins_approved), sum(joins_declined), sum(joins_other),
       sum(deliveries_sent), sum(deliveries_failed),
       (array_agg(active_members ORDER BY hour DESC) FILTER (WHERE active_members IS NOT NULL))[1],
       max(hour)
  FROM analytics_fleet_hourly
 WHERE hour >= %(start)s AND hour < %(end)s AND complete
 GROUP BY 1
"""

SQL_FLEET_LAST_COMPLETE = """
SELECT max(hour) FROM analytics_fleet_hourly WHERE complete AND hour >= %(start)s AND hour < %(end)s
"""

SQL_FLEET_LATEST_ACTIVE = """
SELECT hour, active_members FROM analytics_fleet_hourly
 WHERE active_members IS NOT NULL AND hour >= %(start)s AND hour < %(end)s
 ORDER BY hour DESC LIMIT 1
"""

SQL_FLEET_MEMBERS_NOW = """
SELECT COALESCE(sum(member_count), 0), count(member_count) FROM managed_groups WHERE is_active
"""

SQL_FLEET_TAIL_JOINS = f"""
SELECT date_bin(%(width)s, processed_at, %(origin)s) AS b, {_OUTCOMES}
  FROM join_requests
 WHERE processed_at >= %(start)s AND processed_at < %(end)s
 GROUP BY 1
"""

SQL_FLEET_TAIL_DELIVERIES = """
SELECT b, sum(sent)::bigint, sum(failed)::bigint FROM (
    SELECT date_bin(%(width)s, sent_at, %(origin)s) AS b, count(*) AS sent, 0 AS failed
      FROM sent_messages WHERE status = 'sent' AND sent_at >= %(start)s AND sent_at < %(end)s GROUP BY 1
    UNION ALL
    SELECT date_bin(%(width)s, updated_at, %(origin)s), 0, count(*)
      FROM sent_messages WHERE status = 'failed' AND updated_at >= %(start)s AND updated_at < %(end)s GROUP BY 1
) AS done GROUP BY b
"""

# ---------------------------------------------------------------- the rollup
# One row per hour in [first, last]: members = the sum of each group's last reading before the hour's
# end (groups active now, or deactivated only after that hour), one index probe per group. An hour
# rolled before it ended is `complete = false` and rolled again; active_members is never overwritten
# with NULL (only a snapshot sets it: the past cannot be recounted).
SQL_ROLLUP = """
WITH hours AS (
    SELECT h AS hour, LEAST(h + interval '1 hour', %(now)s) AS hour_end, h + interval '1 hour' <= %(now)s AS complete
      FROM generate_series(%(first)s::timestamptz, %(last)s::timestamptz, interval '1 hour') AS h
)
INSERT INTO analytics_fleet_hourly AS a
       (hour, members, groups, active_members, joins_approved, joins_declined, joins_other,
        deliveries_sent, deliveries_failed, complete, rolled_at)
SELECT hours.hour, m.members, m.groups, NULL, j.approved, j.declined, j.other, d.sent, d.failed,
       hours.complete, %(now)s
  FROM hours
  CROSS JOIN LATERAL (
      SELECT COALESCE(sum(r.member_count), 0) AS members, count(*) AS groups
        FROM managed_groups g
        CROSS JOIN LATERAL (
            SELECT member_count FROM member_count_history h
             WHERE h.group_id = g.group_id AND h.recorded_at < hours.hour_end
             ORDER BY h.recorded_at DESC LIMIT 1
        ) AS r
       WHERE g.is_active OR g.deactivated_at >= hours.hour_end
  ) AS m
  CROSS JOIN LATERAL (
      SELECT count(*) FILTER (WHERE status = 'approved') AS approved,
             count(*) FILTER (WHERE status = 'declined') AS declined,
             count(*) FILTER (WHERE status NOT IN ('approved', 'declined')) AS other
        FROM join_requests WHERE processed_at >= hours.hour AND processed_at < hours.hour_end
  ) AS j
  CROSS JOIN LATERAL (
      SELECT (SELECT count(*) FROM sent_messages
               WHERE status = 'sent' AND sent_at >= hours.hour AND sent_at < hours.hour_end) AS sent,
             (SELECT count(*) FROM sent_messages
               WHERE status = 'failed' AND updated_at >= hours.hour AND updated_at < hours.hour_end) AS failed
  ) AS d
ON CONFLICT (hour) DO UPDATE
   SET members = EXCLUDED.members, groups = EXCLUDED.groups,
       joins_approved = EXCLUDED.joins_approved, joins_declined = EXCLUDED.joins_declined,
       joins_other = EXCLUDED.joins_other, deliveries_sent = EXCLUDED.deliveries_sent,
       deliveries_failed = EXCLUDED.deliveries_failed, complete = EXCLUDED.complete,
       rolled_at = EXCLUDED.rolled_at
"""

SQL_ROLLUP_RESUME = "SELECT max(hour) FROM analytics_fleet_hourly WHERE complete"

# Where a first rollup starts: the oldest row of each source table, found by its serial key (an index,
# and in insertion order, close enough to time order); nothing before it is worth rolling up.
SQL_EARLIEST = """
SELECT LEAST((SELECT recorded_at FROM member_count_history ORDER BY id LIMIT 1),
             (SELECT processed_at FROM join_requests WHERE processed_at IS NOT NULL ORDER BY request_id LIMIT 1),
             (SELECT updated_at FROM sent_messages ORDER BY message_id LIMIT 1))
"""

# Each group's members seen in the last 24 h (one index range per group on (chat_id, last_seen_at)).
SQL_SNAPSHOT_GROUPS = """
INSERT INTO analytics_group_daily AS a (group_id, day, active_members, rolled_at)
SELECT g.group_id, (%(now)s AT TIME ZONE 'UTC')::date,
       (SELECT count(*) FROM member_activity m
         WHERE m.chat_id = g.group_id AND m.last_seen_at >= %(since)s AND m.last_seen_at <= %(now)s
           AND m.status = ANY(%(present)s)),
       %(now)s
  FROM managed_groups g
ON CONFLICT (group_id, day) DO UPDATE SET active_members = EXCLUDED.active_members, rolled_at = EXCLUDED.rolled_at
"""

SQL_SNAPSHOT_FLEET = """
UPDATE analytics_fleet_hourly
   SET active_members = (SELECT COALESCE(sum(d.active_members), 0) FROM analytics_group_daily d
                           JOIN managed_groups g ON g.group_id = d.group_id AND g.is_active
                          WHERE d.day = (%(now)s AT TIME ZONE 'UTC')::date)
 WHERE hour = %(hour)s
"""

SQL_PRUNE = """
WITH h AS (DELETE FROM analytics_fleet_hourly WHERE hour < %(before)s RETURNING 1),
     d AS (DELETE FROM analytics_group_daily WHERE day < (%(before)s AT TIME ZONE 'UTC')::date RETURNING 1)
SELECT (SELECT count(*) FROM h) + (SELECT count(*) FROM d)
"""

KEEP_DAYS = 400  # rollups are small (one row per hour; one per group per day): a year and a bit


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


async def _now(conn: AsyncConnection[Any]) -> datetime:
    cur = await conn.execute("SELECT now()")
    row = await cur.fetchone()
    assert row is not None
    return row[0].astimezone(UTC)


async def roll_up(
    conn: AsyncConnection[Any], now: datetime | None = None, *, max_hours: int = MAX_HOURS_PER_ROLLUP
) -> int:
    """Roll the hours since the last complete one (at most `max_hours`, oldest first, never before
    ROLLUP_DAYS ago) up to the one holding `now`; snapshot active members when the range reaches
    `now`. Returns the hours written. Idempotent: run it as often as you like."""
    now = now.astimezone(UTC) if now is not None else await _now(conn)
    current = _hour(now)
    cur = await conn.execute(SQL_ROLLUP_RESUME)
    row = await cur.fetchone()
    floor = current - timedelta(days=ROLLUP_DAYS)
    if row is None or row[0] is None:  # the first run: from the oldest data (now, on a fresh install)
        cur = await conn.execute(SQL_EARLIEST)
        oldest = await cur.fetchone()
        start = _hour(oldest[0].astimezone(UTC)) if oldest and oldest[0] is not None else current
        first = max(floor, start)
    else:
        first = max(floor, row[0].astimezone(UTC) + HOUR)
    first = min(first, current)
    last = min(current, first + (max_hours - 1) * HOUR)
    await conn.execute(SQL_ROLLUP, {"first": first, "last": last, "now": now})
    if last == current:
        await snapshot_active(conn, now)
    await conn.execute(SQL_PRUNE, {"before": now - timedelta(days=KEEP_DAYS)})
    return int((last - first) / HOUR) + 1


async def snapshot_active(conn: AsyncConnection[Any], now: datetime) -> None:
    """Active members now: today's row per group, and the fleet's sum on the current hour's row."""
    params = {"now": now, "since": now - ACTIVE_SPAN, "present": PRESENT, "hour": _hour(now)}
    await conn.execute(SQL_SNAPSHOT_GROUPS, params)
    await conn.execute(SQL_SNAPSHOT_FLEET, params)


def _params(win: Window, starts: list[datetime], now: datetime, group_id: int | None) -> dict[str, Any]:
    return {
        "width": win.bucket,
        "origin": ORIGIN,
        "start": starts[0],
        "end": now + timedelta(microseconds=1),  # the reading at `now` itself counts
        "group": group_id,
    }


def _carry(starts: list[datetime], found: dict[datetime, int], before: int | None) -> list[int | None]:
    out: list[int | None] = []
    last = before
    for start in starts:
        last = found.get(start, last)
        out.append(last)
    return out


def _index(starts: list[datetime], rows: list[tuple[Any, ...]], width: int) -> list[list[int]]:
    """Per-bucket counts (`width` columns after the bucket) in bucket order, zero where none."""
    by_start = {r[0].astimezone(UTC): r[1:] for r in rows if r[0] is not None}
    return [[int(by_start.get(s, (0,) * width)[k] or 0) for s in starts] for k in range(width)]


async def group_series(conn: AsyncConnection[Any], group_id: int, win: Window, now: datetime | None = None) -> Series:
    """One group's four figures over `win`, ending at `now` (the database's clock by default)."""
    now = now.astimezone(UTC) if now is not None else await _now(conn)
    starts = win.starts(now)
    params = _params(win, starts, now, group_id)
    series = Series(group_id, win, now, starts)

    cur = await conn.execute(SQL_GROUP_MEMBERS, params)
    found: dict[datetime, int] = {}
    before: int | None = None
    for b, count in await cur.fetchall():
        if b is None:
            before = int(count)
        else:
            found[b.astimezone(UTC)] = int(count)
    series.members = _carry(starts, found, before)

    cur = await conn.execute(SQL_GROUP_JOINS, params)
    series.joins_approved, series.joins_declined, series.joins_other = _index(starts, await cur.fetchall(), 3)
    cur = await conn.execute(SQL_GROUP_DELIVERIES, params)
    series.deliveries_sent, series.deliveries_failed = _index(starts, await cur.fetchall(), 2)

    first_day, last_day = starts[0].date(), now.date()
    cur = await conn.execute(SQL_GROUP_ACTIVE, {"group": group_id, "first_day": first_day, "last_day": last_day})
    days: dict[date, int] = {d: int(n) for d, n in await cur.fetchall()}
    # the snapshot of each bucket's last day
    bucket_days = [(min(s + win.bucket, now) - timedelta(microseconds=1)).date() for s in starts]
    active: list[int | None] = [days.get(d) for d in bucket_days]
    cur = await conn.execute(SQL_GROUP_ACTIVE_NOW, {"group": group_id, "since": now - ACTIVE_SPAN, "present": PRESENT})
    live = await cur.fetchone()
    active[-1] = int(live[0]) if live else active[-1]
    series.active_members = active
    return series


async def fleet_series(conn: AsyncConnection[Any], win: Window, now: datetime | None = None) -> Series:
    """The fleet's four figures over `win`: complete rolled-up hours, then the live tail from the raw
    tables (at most TAIL_CAP of it; buckets older than the tail with no rollup show nothing)."""
    now = now.astimezone(UTC) if now is not None else await _now(conn)
    starts = win.starts(now)
    params = _params(win, starts, now, None)
    series = Series(None, win, now, starts)

    cur = await conn.execute(SQL_FLEET_LAST_COMPLETE, params)
    row = await cur.fetchone()
    last_complete = row[0].astimezone(UTC) if row and row[0] is not None else None
    tail = last_complete + HOUR if last_complete is not None else starts[0]
    tail = max(tail, _hour(now) - TAIL_CAP, starts[0])

    cur = await conn.execute(SQL_FLEET_ROLLUP, {**params, "end": tail})
    rolled = await cur.fetchall()
    members_at: dict[datetime, int] = {}
    active_at: dict[datetime, int] = {}
    counts: dict[datetime, list[int]] = {}
    for b, members, ja, jd, jo, ds, df, active, _ in rolled:
        key = b.astimezone(UTC)
        members_at[key] = int(members)
        if active is not None:
            active_at[key] = int(active)
        counts[key] = [int(ja), int(jd), int(jo), int(ds), int(df)]

    tail_params = {**params, "start": tail}
    cur = await conn.execute(SQL_FLEET_TAIL_JOINS, tail_params)
    for b, ja, jd, jo in await cur.fetchall():
        c = counts.setdefault(b.astimezone(UTC), [0, 0, 0, 0, 0])
        c[0], c[1], c[2] = c[0] + int(ja), c[1] + int(jd), c[2] + int(jo)
    cur = await conn.execute(SQL_FLEET_TAIL_DELIVERIES, tail_params)
    for b, ds, df in await cur.fetchall():
        c = counts.setdefault(b.astimezone(UTC), [0, 0, 0, 0, 0])
        c[3], c[4] = c[3] + int(ds), c[4] + int(df)

    cur = await conn.execute(SQL_FLEET_MEMBERS_NOW)
    live = await cur.fetchone()
    live_members = int(live[0]) if live and live[1] else None
    tail_bucket = ORIGIN + ((tail - ORIGIN) // win.bucket) * win.bucket
    if live_members is not None:
        for start in starts:
            if start >= tail_bucket:
                members_at[start] = live_members  # the tail's buckets carry today's sum (no rollup yet)
    series.members = [members_at.get(s) for s in starts]

    cur = await conn.execute(SQL_FLEET_LATEST_ACTIVE, {"start": starts[0], "end": now + HOUR})
    latest = await cur.fetchone()
    if latest is not None:
        latest_bucket = ORIGIN + ((latest[0].astimezone(UTC) - ORIGIN) // win.bucket) * win.bucket
        active_at[latest_bucket] = int(latest[1])
    series.active_members = [active_at.get(s) for s in starts]

    zero = [0, 0, 0, 0, 0]
    per_bucket = [counts.get(s, zero) for s in starts]
    series.joins_approved = [c[0] for c in per_bucket]
    series.joins_declined = [c[1] for c in per_bucket]
    series.joins_other = [c[2] for c in per_bucket]
    series.deliveries_sent = [c[3] for c in per_bucket]
    series.deliveries_failed = [c[4] for c in per_bucket]
    return series


async def series_for(
    conn: AsyncConnection[Any], win: Window, group_id: int | None = None, now: datetime | None = None
) -> Series:
    """A group's series, or the fleet's when `group_id` is None."""
    if group_id is None:
        return await fleet_series(conn, win, now)
    return await group_series(conn, group_id, win, now)


SQL_GROUP_TITLE = "SELECT title, is_active FROM managed_groups WHERE group_id = %s"


async def group_title(conn: AsyncConnection[Any], group_id: int) -> tuple[str, bool] | None:
    """(title, is_active) of a managed group; None when it is not managed (as Telegram sent it: show
    it through the safe-text helpers)."""
    cur = await conn.execute(SQL_GROUP_TITLE, (group_id,))
    row = await cur.fetchone()
    return (str(row[0]), bool(row[1])) if row else None


# ---------------------------------------------------------------- demo history (tgms demo only)
# `tgms demo` starts on an empty database; without a past its charts would be flat lines. It seeds
# DEMO_DAYS of made-up history, clearly its own: member-count readings per group (growing towards each
# group's size, with a daily wave), then the fleet's hourly rollup is computed from them as the job
# would, and the rollup rows of that past get made-up join and delivery counts (the raw join_requests
# and sent_messages tables stay the demo's live traffic only, so its summary counts stay exact), plus
# daily active-member snapshots. Everything seeded ends an hour before the demo started.
DEMO_DAYS = 30

SQL_DEMO_READINGS = """
INSERT INTO member_count_history (group_id, member_count, recorded_at)
SELECT s.id,
       GREATEST(1, round(s.size * (0.5 + 0.5 * (1 - h::float8 / %(hours)s))
                         - 2 * abs(sin(h / 3.8 + abs(s.id) %% 11))))::int,
       %(until)s - make_interval(hours => h) + make_interval(mins => (abs(s.id) %% 50)::int)
  FROM unnest(%(ids)s::bigint[], %(sizes)s::int[]) AS s(id, size), generate_series(1, %(hours)s) AS h
"""

SQL_DEMO_FLEET = """
UPDATE analytics_fleet_hourly
   SET joins_approved = round(groups * (0.2 + 0.15 * sin(extract(epoch FROM hour) / 20000)))::int + 1,
       joins_declined = CASE WHEN extract(hour FROM hour)::int %% 5 = 0 THEN 1 ELSE 0 END,
       joins_other = CASE WHEN extract(hour FROM hour)::int = 3 THEN 1 ELSE 0 END,
       deliveries_sent = CASE WHEN extract(hour FROM hour)::int IN (9, 18) THEN groups ELSE 0 END,
       deliveries_failed = CASE WHEN extract(hour FROM hour)::int = 18 AND extract(day FROM hour)::int %% 4 = 0
                                THEN 1 ELSE 0 END,
       active_members = round(members * (0.35 + 0.1 * sin(extract(epoch FROM hour) / 40000)))::bigint
 WHERE hour < %(until)s
"""

SQL_DEMO_DAILY = """
INSERT INTO analytics_group_daily (group_id, day, active_members)
SELECT s.id, (%(until)s AT TIME ZONE 'UTC')::date - d,
       GREATEST(0, round(s.size * (0.3 + 0.1 * sin(d + abs(s.id) %% 7)) * (1 - d::float8 / (2 * %(days)s))))::int
  FROM unnest(%(ids)s::bigint[], %(sizes)s::int[]) AS s(id, size), generate_series(0, %(days)s) AS d
ON CONFLICT (group_id, day) DO NOTHING
"""


async def seed_demo_history(conn: AsyncConnection[Any], sizes: dict[int, int], days: int = DEMO_DAYS) -> int:
    """Made-up history for the demo's groups (`sizes`: group id -> members now); returns the hours
    rolled up. Only `tgms demo` calls this, on its own database."""
    now = await _now(conn)
    until = _hour(now) - HOUR
    params = {"ids": list(sizes), "sizes": list(sizes.values()), "hours": days * 24, "until": until, "days": days}
    await conn.execute(SQL_DEMO_READINGS, params)
    # every hour again, including any the rollup job rolled before the readings existed
    first = until - timedelta(hours=days * 24)
    await conn.execute(SQL_ROLLUP, {"first": first, "last": _hour(now), "now": now})
    await snapshot_active(conn, now)
    await conn.execute(SQL_DEMO_FLEET, params)
    await conn.execute(SQL_DEMO_DAILY, params)
    return int((_hour(now) - first) / HOUR) + 1
