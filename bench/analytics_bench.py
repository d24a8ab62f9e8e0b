"""Analytics benchmark: the charts' queries at 10k groups x 30 days, rollup against raw tables.

Seeds a history in SQL (generate_series): one member-count reading per group per hour (10k x 720 =
7.2M rows at full size), 20 decided join requests and 20 broadcast copies (2% failed) per group, and
20 recently seen members per group. Then runs the `analytics_rollup` job's work as the job does it
(slices of at most a week of hours) and measures, median of --reps runs each:

- the fleet's member-count history over 30 days (daily buckets): the rollup's query against the named
  baseline "raw": the same figure computed from member_count_history (each group's last reading
  before each bucket's end, by index: the best a query on the raw table can do);
- join requests per day by outcome and deliveries per day over 30 days: rollup against a GROUP BY on
  join_requests / sent_messages;
- the whole fleet series (`analytics.fleet_series`: four figures, rollup plus live tail) and one
  group's (`analytics.group_series`, raw rows by index), as the screen and `tgms stats` call them;
- the rollup job's cost: the full 30-day backfill, and one regular run (the current hour again).

Query times are PostgreSQL's own (EXPLAIN ANALYZE execution time); the series calls are wall-clock
round trips. Target: the fleet's member-count history in under 100 ms at 10k groups x 30 days.

Usage: ./dev.sh bench analytics_bench [--groups 10000] [--days 30] [--reps 5]
Uses TGMS_BENCH_DATABASE_URL when set (a server URL; a database is created on it), else a throwaway
embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_server, migrated_database

from tgms_tui.backend import analytics

TARGET_MS = 100.0

SEED = [
    (
        "managed groups",
        """INSERT INTO managed_groups (group_id, title, member_count, is_active)
           SELECT -1000000000 - g, 'bench group ' || g, 1000 + g %% 500 + %(hours)s / 6, true
             FROM generate_series(1, %(groups)s) AS g""",
    ),
    (
        "member-count readings (one per group per hour)",
        """INSERT INTO member_count_history (group_id, member_count, recorded_at)
           SELECT -1000000000 - g, 1000 + g %% 500 + (%(hours)s - h) / 6,
                  now() - make_interval(hours => h, mins => g %% 60)
             FROM generate_series(%(hours)s - 1, 0, -1) AS h, generate_series(1, %(groups)s) AS g
            ORDER BY h DESC""",  # in time order, as readings arrive (the rollup's first run starts at the oldest)
    ),
    (
        "decided join requests (20 per group)",
        """INSERT INTO join_requests (chat_id, user_id, status, requested_at, processed_at)
           SELECT -1000000000 - g, n,
                  CASE WHEN n %% 10 = 0 THEN 'declined' WHEN n %% 17 = 0 THEN 'expired' ELSE 'approved' END,
                  now() - make_interval(hours => (g * 7 + n * 31) %% %(hours)s),
                  now() - make_interval(hours => (g * 7 + n * 31) %% %(hours)s)
             FROM generate_series(1, %(groups)s) AS g, generate_series(1, 20) AS n""",
    ),
    (
        "broadcast copies (20 broadcasts, 2% failed)",
        """INSERT INTO sent_messages (chat_id, debug_code, status, sent_at, updated_at)
           SELECT -1000000000 - g, 'b' || b || '-' || g,
                  CASE WHEN (g + b) %% 50 = 0 THEN 'failed' ELSE 'sent' END,
                  CASE WHEN (g + b) %% 50 = 0 THEN NULL ELSE now() - make_interval(hours => b * %(hours)s / 21) END,
                  now() - make_interval(hours => b * %(hours)s / 21)
             FROM generate_series(1, %(groups)s) AS g, generate_series(1, 20) AS b""",
    ),
    (
        "member activity (20 per group, seen in the last 2 days)",
        """INSERT INTO member_activity (chat_id, user_id, status, last_seen_at)
           SELECT -1000000000 - g, n, 'member', now() - make_interval(hours => (g + n) %% 48)
             FROM generate_series(1, %(groups)s) AS g, generate_series(1, 20) AS n""",
    ),
]

# The named baseline: each figure straight from its raw table.
RAW_MEMBERS = """
WITH buckets AS (
    SELECT b AS start, LEAST(b + %(width)s, %(now)s) AS bucket_end
      FROM generate_series(%(start)s::timestamptz, %(last)s::timestamptz, %(width)s) AS b
)
SELECT buckets.start, sum(r.member_count)
  FROM buckets CROSS JOIN managed_groups g
  CROSS JOIN LATERAL (
      SELECT member_count FROM member_count_history h
       WHERE h.group_id = g.group_id AND h.recorded_at < buckets.bucket_end
       ORDER BY h.recorded_at DESC LIMIT 1) AS r
 WHERE g.is_active
 GROUP BY buckets.start
"""
RAW_JOINS = """
SELECT date_bin(%(width)s, processed_at, %(origin)s) AS b,
       count(*) FILTER (WHERE status = 'approved'), count(*) FILTER (WHERE status = 'declined'),
       count(*) FILTER (WHERE status NOT IN ('approved', 'declined'))
  FROM join_requests WHERE processed_at >= %(start)s AND processed_at < %(end)s
 GROUP BY 1
"""
RAW_DELIVERIES = """
SELECT date_bin(%(width)s, CASE WHEN status = 'sent' THEN sent_at ELSE updated_at END, %(origin)s) AS b,
       count(*) FILTER (WHERE status = 'sent'), count(*) FILTER (WHERE status = 'failed')
  FROM sent_messages
 WHERE status IN ('sent', 'failed') AND CASE WHEN status = 'sent' THEN sent_at ELSE updated_at END >= %(start)s
 GROUP BY 1
"""


def explain_ms(conn: psycopg.Connection[Any], sql: str, params: dict[str, Any]) -> float:
    rows = conn.execute("EXPLAIN (ANALYZE, BUFFERS OFF, TIMING OFF) " + sql, params).fetchall()
    text = "\n".join(str(r[0]) for r in rows)
    found = re.search(r"Execution Time: ([\d.]+) ms", text)
    assert found, text
    return float(found.group(1))


def median_ms(reps: int, measure: Any) -> float:
    return statistics.median(measure() for _ in range(reps))


async def wall_ms(url: str, reps: int, call: Any) -> float:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await call(conn)  # warm
        times = []
        for _ in range(reps):
            started = time.perf_counter()
            await call(conn)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    hours = args.days * 24
    with bench_server() as server, migrated_database(server.url, "tgms_analytics_bench") as url:
        with psycopg.connect(url, autocommit=True) as conn:
            print(f"seeding {args.groups:,} groups x {args.days} days")
            for what, sql in SEED:
                started = time.perf_counter()
                cur = conn.execute(sql, {"groups": args.groups, "hours": hours})
                print(f"  {what}: {cur.rowcount:,} rows in {time.perf_counter() - started:.1f} s")
            conn.execute("VACUUM ANALYZE")
            now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]

            # the job's work: the backfill in week-long slices, then one regular run
            started = time.perf_counter()
            runs = rolled = 0
            while True:
                n = asyncio.run(_roll(url))
                runs, rolled = runs + 1, rolled + n
                if n < analytics.MAX_HOURS_PER_ROLLUP:
                    break
            backfill = time.perf_counter() - started
            started = time.perf_counter()
            asyncio.run(_roll(url))
            regular = (time.perf_counter() - started) * 1000
            print(
                f"rollup: backfill of {rolled} hours in {runs} runs: {backfill:.1f} s; a regular run: {regular:.0f} ms"
            )
            conn.execute("ANALYZE analytics_fleet_hourly")

            win = analytics.WINDOWS["30d"]
            starts = win.starts(now)
            params = {
                "width": win.bucket,
                "origin": analytics.ORIGIN,
                "start": starts[0],
                "last": starts[-1],
                "end": now + timedelta(hours=-1),
                "now": now,
            }
            rows = [
                ("member-count history (30 d, daily)", RAW_MEMBERS, analytics.SQL_FLEET_ROLLUP),
                ("join requests per day by outcome", RAW_JOINS, analytics.SQL_FLEET_ROLLUP),
                ("deliveries per day", RAW_DELIVERIES, analytics.SQL_FLEET_ROLLUP),
            ]
            print(f"\nfleet chart queries at {args.groups:,} groups x {args.days} days (median of {args.reps}, ms):")
            print(f"{'figure':<38} {'raw (baseline)':>15} {'rollup':>9} {'speed-up':>9}")
            results = {}
            for name, raw_sql, rolled_sql in rows:
                raw_ms = median_ms(args.reps, lambda s=raw_sql: explain_ms(conn, s, params))
                rolled_ms = median_ms(args.reps, lambda s=rolled_sql: explain_ms(conn, s, params))
                results[name] = rolled_ms
                print(f"{name:<38} {raw_ms:>15.1f} {rolled_ms:>9.2f} {raw_ms / rolled_ms:>8.0f}x")

        fleet = asyncio.run(wall_ms(url, args.reps, lambda c: analytics.fleet_series(c, win)))
        group = asyncio.run(wall_ms(url, args.reps, lambda c: analytics.group_series(c, -1000000001, win)))
        week = asyncio.run(wall_ms(url, args.reps, lambda c: analytics.fleet_series(c, analytics.WINDOWS["7d"])))
        print("\nseries as the screen and `tgms stats` read them (wall clock, ms, median):")
        print(f"  fleet, 30 d (all four figures, rollup + live tail): {fleet:.1f}")
        print(f"  fleet, 7 d: {week:.1f}")
        print(f"  one group, 30 d (raw rows by index): {group:.1f}")
        member_ms = results["member-count history (30 d, daily)"]
        verdict = "MET" if member_ms < TARGET_MS and fleet < TARGET_MS else "MISSED"
        print(
            f"\ntarget: fleet member-count history < {TARGET_MS:.0f} ms at {args.groups:,} x {args.days} d: "
            f"query {member_ms:.2f} ms, whole fleet series {fleet:.1f} ms: {verdict}"
        )
    return 0


async def _roll(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await analytics.roll_up(conn)


if __name__ == "__main__":
    raise SystemExit(main())
