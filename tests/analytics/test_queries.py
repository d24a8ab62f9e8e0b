"""The analytics repository against a known history: exact figures per bucket, for a group and for the
fleet, from the rollup and from the live tail; and index-served plans for every chart query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import analytics
from tgms_tui.backend.analytics import WINDOWS, Series

from ..test_sql_placement import tables
from .history import NOW, A, B, at, seed_history


def bucket(series: Series, start: datetime) -> dict[str, object]:
    return series.rows()[series.starts.index(start)]


def test_windows_align_on_utc_and_end_with_now() -> None:
    starts = WINDOWS["24h"].starts(NOW)
    assert len(starts) == 24 and starts[-1] == at(10, 12) and starts[0] == at(9, 13)
    starts = WINDOWS["7d"].starts(NOW)
    assert len(starts) == 28 and starts[-1] == at(10, 12) and starts[0] == at(3, 18)
    starts = WINDOWS["30d"].starts(NOW)
    assert len(starts) == 30 and starts[-1] == at(10, 0) and starts[0] == datetime(2026, 2, 9, tzinfo=UTC)
    with pytest.raises(analytics.UnknownWindow, match="24h, 7d, 30d"):
        analytics.window("1y")


async def test_group_series_exact(db_url: str, pool: AsyncConnectionPool) -> None:
    seed_history(db_url)
    async with pool.connection() as conn:
        month = await analytics.group_series(conn, A, WINDOWS["30d"], NOW)
        day = await analytics.group_series(conn, A, WINDOWS["24h"], NOW)
    # members: 100 carried in from before the window, 110 from March 7, 120 today
    assert month.members[0] == 100
    assert bucket(month, at(6, 0))["members"] == 100
    assert bucket(month, at(7, 0))["members"] == 110
    assert bucket(month, at(9, 0))["members"] == 110
    assert month.members[-1] == 120
    assert bucket(month, at(9, 0)) | {"bucket_start": None} == {
        "bucket_start": None,
        "members": 110,
        "joins_approved": 3,
        "joins_declined": 1,
        "joins_other": 0,
        "deliveries_sent": 0,
        "deliveries_failed": 0,
        "active_members": 7,  # the stored snapshot of that day
    }
    assert bucket(month, at(5, 0))["deliveries_sent"] == 2
    assert sum(month.deliveries_failed) == 0  # B's failure is B's
    assert month.totals() == {
        "members": 120,
        "members_change": 20,
        "joins_approved": 3,
        "joins_declined": 1,
        "joins_other": 1,
        "deliveries_sent": 0 + 2,
        "deliveries_failed": 0,
        "active_members": 3,  # live: three present members seen within 24 h
    }
    # 24 h in hours: 110 until the 11:15 reading, then 120; the 10:xx decisions of March 9 fall
    # before this window (it starts at 13:00 yesterday); the expiry at 12:20 is in the last hour
    assert day.members[:22] == [110] * 22 and day.members[22:] == [120, 120]
    assert sum(day.joins_approved) == 0 and day.joins_other[-1] == 1
    assert day.active_members[-1] == 3


async def test_fleet_series_from_the_rollup_is_exact(db_url: str, pool: AsyncConnectionPool) -> None:
    seed_history(db_url)
    async with pool.connection() as conn:
        hours = await analytics.roll_up(conn, NOW, max_hours=10_000)
        month = await analytics.fleet_series(conn, WINDOWS["30d"], NOW)
    assert hours == 30 * 24 + 1  # from 30 days ago to the current hour
    # B (50) counts until it was deactivated (March 8, 12:30): the March 7 bucket ends before that
    assert bucket(month, at(6, 0))["members"] == 150
    assert bucket(month, at(7, 0))["members"] == 160
    assert bucket(month, at(8, 0))["members"] == 110
    assert month.members[-1] == 120  # live: the active groups' current counts
    assert bucket(month, at(9, 0))["joins_approved"] == 4 and bucket(month, at(9, 0))["joins_declined"] == 1
    assert bucket(month, at(10, 0))["joins_other"] == 1  # in the live tail
    assert bucket(month, at(5, 0))["deliveries_sent"] == 2
    assert bucket(month, at(6, 0))["deliveries_failed"] == 1  # the skipped copy is not counted
    assert month.active_members[-1] == 3  # snapshot: A's three (B is inactive)
    assert month.totals()["joins_approved"] == 4 and month.totals()["deliveries_failed"] == 1


async def test_rollup_and_live_tail_agree(db_url: str, pool: AsyncConnectionPool) -> None:
    """Within the tail's reach the raw tables and the rollup give the same counts; running the
    rollup again (idempotent) changes nothing; a catch-up resumes where it stopped."""
    seed_history(db_url)
    async with pool.connection() as conn:
        raw = await analytics.fleet_series(conn, WINDOWS["24h"], NOW)
        assert await analytics.roll_up(conn, NOW, max_hours=700) == 700
        assert await analytics.roll_up(conn, NOW, max_hours=700) == 21  # the rest, up to now
        rolled = await analytics.fleet_series(conn, WINDOWS["24h"], NOW)
        assert await analytics.roll_up(conn, NOW) == 1  # only the open hour again
        again = await analytics.fleet_series(conn, WINDOWS["24h"], NOW)
    for name in ("joins_approved", "joins_declined", "joins_other", "deliveries_sent", "deliveries_failed"):
        assert getattr(raw, name) == getattr(rolled, name) == getattr(again, name), name
    assert rolled.members == [110] * 22 + [120, 120]  # A alone (B deactivated 2 days ago); 120 from 11:15
    assert rolled.rows() == again.rows()


async def test_csv_and_json_shapes(db_url: str, pool: AsyncConnectionPool) -> None:
    seed_history(db_url)
    async with pool.connection() as conn:
        week = await analytics.group_series(conn, B, WINDOWS["7d"], NOW)
    lines = week.as_csv().splitlines()
    assert lines[0] == ",".join(Series.COLUMNS) and len(lines) == 1 + 28
    doc = week.as_json()
    assert doc["scope"] == "group" and doc["group_id"] == B and len(doc["buckets"]) == 28
    assert doc["totals"]["members"] == 50 and doc["totals"]["joins_approved"] == 1


# Every chart query with sample parameters: none may scan a growing table whole.
_P = {
    "width": timedelta(days=1),
    "origin": analytics.ORIGIN,
    "start": NOW - timedelta(days=30),
    "end": NOW,
    "group": A,
    "first_day": NOW.date(),
    "last_day": NOW.date(),
    "since": NOW,
    "present": analytics.PRESENT,
}
CHART_QUERIES = {name: getattr(analytics, name) for name in vars(analytics) if name.startswith("SQL_")}
# Whole by design: managed_groups (every group is listed); the rollup's members probe each group.
WRITES = {"SQL_ROLLUP", "SQL_SNAPSHOT_GROUPS", "SQL_SNAPSHOT_FLEET", "SQL_PRUNE", "SQL_ROLLUP_RESUME"}
WRITES |= {"SQL_DEMO_READINGS", "SQL_DEMO_FLEET", "SQL_DEMO_DAILY"}  # the demo's one-off seeding


async def test_chart_queries_never_need_a_full_scan(pool: AsyncConnectionPool) -> None:
    growing = tables() - {"managed_groups", "bot_health"}
    async with pool.connection() as conn:
        await conn.execute("SET enable_seqscan = off")
        for name, sql in CHART_QUERIES.items():
            if name in WRITES:
                continue
            params = (A,) if name == "SQL_GROUP_TITLE" else _P
            cur = await conn.execute("EXPLAIN " + sql, params)
            plan = "\n".join(str(r[0]) for r in await cur.fetchall())
            scanned = {t for t in growing if f"Seq Scan on {t} " in plan}
            assert not scanned, f"{name} scans {scanned}:\n{plan}"


def test_rollup_reads_by_index(db_url: str) -> None:
    """The rollup's statement probes each table by index too (its one whole read is managed_groups)."""
    seed_history(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        params = {"first": NOW - timedelta(hours=3), "last": NOW, "now": NOW}
        plan = "\n".join(str(r[0]) for r in conn.execute("EXPLAIN " + analytics.SQL_ROLLUP, params).fetchall())
        growing = tables() - {"managed_groups", "analytics_fleet_hourly"}
        scanned = {t for t in growing if f"Seq Scan on {t} " in plan}
        assert not scanned, plan


async def test_demo_history_fills_every_chart_but_not_the_raw_tables(db_url: str, pool: AsyncConnectionPool) -> None:
    """`tgms demo` seeds a made-up past: every 30-day bucket has members and activity, yet the raw
    join_requests and sent_messages tables (the demo summary counts them exactly) stay empty."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO managed_groups (group_id, title, member_count) VALUES (-7, 'a', 30), (-8, 'b', 12)")
    async with pool.connection() as conn:
        hours = await analytics.seed_demo_history(conn, {-7: 30, -8: 12})
        await conn.commit()
        fleet = await analytics.fleet_series(conn, WINDOWS["30d"])
        group = await analytics.group_series(conn, -7, WINDOWS["30d"])
    assert hours >= 30 * 24
    assert all(m is not None and m > 0 for m in fleet.members)
    assert all(n > 0 for n in fleet.joins_approved[:-1]) and sum(fleet.deliveries_sent) > 0
    assert all(a is not None for a in fleet.active_members[:-1])
    first, before_now = group.members[0], group.members[-2]
    assert first is not None and before_now is not None and first < before_now <= 31
    assert all(a is not None for a in group.active_members)
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute(
            "SELECT (SELECT count(*) FROM join_requests) + (SELECT count(*) FROM sent_messages)"
        ).fetchone() == (0,)


async def test_first_rollup_starts_at_the_oldest_data(db_url: str, pool: AsyncConnectionPool) -> None:
    """A fresh install rolls up from its first reading, not 30 days of nothing; with no data at all,
    from the current hour."""
    async with pool.connection() as conn:
        assert await analytics.roll_up(conn, NOW) == 1
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE analytics_fleet_hourly")
        conn.execute("INSERT INTO managed_groups (group_id, title, member_count) VALUES (-9, 'x', 5)")
        conn.execute(
            "INSERT INTO member_count_history (group_id, member_count, recorded_at) VALUES (-9, 5, %s)",
            (NOW - timedelta(hours=2, minutes=10),),
        )
    async with pool.connection() as conn:
        assert await analytics.roll_up(conn, NOW) == 3  # 10:00 (the reading at 10:20), 11:00, the current 12:00
        rows = await (await conn.execute("SELECT hour, members FROM analytics_fleet_hourly ORDER BY hour")).fetchall()
    assert [(h.astimezone(UTC).hour, m) for h, m in rows] == [(10, 5), (11, 5), (12, 5)]
