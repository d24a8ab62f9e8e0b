"""The TUI's data layer: bounded, index-served queries; the change feed; the refresh throttle."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend import analytics, broadcasts, dashboard, group_actions
from tgms_tui.backend.live import ChangeListener, RefreshScheduler
from tgms_tui.widgets import format as fmt

from ..test_sql_placement import tables
from .seed import GROUPS, seed


def test_backend_modules_do_not_import_textual() -> None:
    """Nor any role: the repositories serve every process."""
    code = (
        "import sys, pkgutil, importlib, tgms_tui.backend as b; "
        "[importlib.import_module(f'tgms_tui.backend.{m.name}') for m in pkgutil.iter_modules(b.__path__)]; "
        "sys.exit(any(r in sys.modules for r in ('textual', 'starlette', 'workers', 'webhook_server', 'telegram_sim')))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


CHART_PARAMS = {
    "width": timedelta(days=1),
    "origin": analytics.ORIGIN,
    "start": datetime(2026, 1, 1, tzinfo=UTC),
    "end": datetime(2026, 1, 31, tzinfo=UTC),
    "group": -1,
    "first_day": date(2026, 1, 1),
    "last_day": date(2026, 1, 31),
    "since": datetime(2026, 1, 30, tzinfo=UTC),
    "present": analytics.PRESENT,
}

# Every named query the control center runs (the dashboard, the group detail and the broadcast
# progress views poll theirs), with sample parameters.
POLLED: dict[str, tuple[str, Any]] = {
    "dashboard.SQL_GROUPS": (dashboard.SQL_GROUPS, None),
    "dashboard.SQL_GROUPS_BY_ID": (dashboard.SQL_GROUPS_BY_ID, ([-1, -2],)),
    "dashboard.SQL_POOL_STATS": (
        dashboard.SQL_POOL_STATS,
        {"window": 60, "cap": dashboard.FAILED_COUNT_CAP, "pools": ["main", "tgms"]},
    ),
    "dashboard.SQL_RECENT_JOBS": (dashboard.SQL_RECENT_JOBS, {"n": 40}),
    "dashboard.SQL_SEARCH_JOBS": (
        dashboard.SQL_SEARCH_JOBS,
        {"n": 40, "scan": dashboard.SEARCH_SCAN, "pattern": "%x%", "id": 7},
    ),
    "dashboard.SQL_SEARCH_JOIN_REQUESTS": (
        dashboard.SQL_SEARCH_JOIN_REQUESTS,
        {"n": 100, "scan": dashboard.SEARCH_SCAN, "pattern": "%x%", "id": 7},
    ),
    "dashboard.SQL_JOB_DETAIL": (dashboard.SQL_JOB_DETAIL, (1,)),
    "dashboard.SQL_WORKERS": (dashboard.SQL_WORKERS, None),
    "dashboard.SQL_JOIN_REQUESTS": (dashboard.SQL_JOIN_REQUESTS, (100,)),
    "dashboard.SQL_DELIVERIES": (dashboard.SQL_DELIVERIES, {"groups": [-1, -2], "bid": 1}),
    "dashboard.SQL_RAID_HOLDS": (dashboard.SQL_RAID_HOLDS, {"cap": dashboard.HELD_COUNT_CAP}),
    "dashboard.SQL_HELD_GROUPS": (dashboard.SQL_HELD_GROUPS, {"n": dashboard.RAID_BANNER_GROUPS}),
    "group_actions.SQL_GROUP": (group_actions.SQL_GROUP, (-1,)),
    "group_actions.SQL_HISTORY": (group_actions.SQL_HISTORY, (-1, 120)),
    "group_actions.SQL_GROUP_JOIN_REQUESTS": (group_actions.SQL_GROUP_JOIN_REQUESTS, (-1, 50)),
    "group_actions.SQL_GROUP_BROADCASTS": (group_actions.SQL_GROUP_BROADCASTS, (-1, 50)),
    "group_actions.SQL_GROUP_KICKS": (group_actions.SQL_GROUP_KICKS, (-1, 50)),
    "broadcasts.SQL_PROGRESS": (broadcasts.SQL_PROGRESS, (1,)),
    # the charts (C) poll these too (tests/analytics/test_queries.py checks every one of the module's)
    **{
        f"analytics.{name}": (getattr(analytics, name), CHART_PARAMS)
        for name in (
            "SQL_GROUP_MEMBERS",
            "SQL_GROUP_JOINS",
            "SQL_GROUP_DELIVERIES",
            "SQL_GROUP_ACTIVE",
            "SQL_GROUP_ACTIVE_NOW",
            "SQL_FLEET_ROLLUP",
            "SQL_FLEET_LAST_COMPLETE",
            "SQL_FLEET_LATEST_ACTIVE",
            "SQL_FLEET_MEMBERS_NOW",
            "SQL_FLEET_TAIL_JOINS",
            "SQL_FLEET_TAIL_DELIVERIES",
        )
    },
}
# Read whole by design (every group is listed; one row per worker process; the join gate's one row).
READ_WHOLE = {"managed_groups", "bot_health", "join_gate"}


def test_every_read_model_query_is_explained() -> None:
    named = {
        f"{m.__name__.rsplit('.', 1)[1]}.{n}"
        for m in (dashboard, group_actions)
        for n in vars(m)
        if n.startswith("SQL_")
    }
    assert named <= set(POLLED), named - set(POLLED)


async def test_polled_queries_never_need_a_full_scan(pool: AsyncConnectionPool) -> None:
    """With sequential scans priced out, every query the control center polls still has an index path
    on every table that grows (jobs, join requests, messages, history...): a refresh never reads a
    whole (possibly 100k-row) table."""
    growing = tables() - READ_WHOLE
    async with pool.connection() as conn:
        await conn.execute("SET enable_seqscan = off")
        for name, (sql, params) in POLLED.items():
            cur = await conn.execute("EXPLAIN " + sql, params)
            plan = "\n".join(str(r[0]) for r in await cur.fetchall())
            scanned = {t for t in growing if f"Seq Scan on {t} " in plan}
            assert not scanned, f"{name} scans {scanned}:\n{plan}"


async def test_queries_return_typed_bounded_rows(db_url: str, pool: AsyncConnectionPool) -> None:
    seed(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (job_type, status, finished_at) "
            "SELECT 'process_telegram_update', 'done', now() - make_interval(secs => n) "
            "FROM generate_series(1, 300) AS n"
        )
    async with pool.connection() as conn:
        jobs = await dashboard.fetch_recent_jobs(conn, per_status=40)
        stats = {s.pool: s for s in await dashboard.fetch_pool_stats(conn)}
        groups = await dashboard.fetch_groups(conn)
        workers = await dashboard.fetch_workers(conn)
    assert len([j for j in jobs if j.status == "done"]) == 40
    assert {j.status for j in jobs} == {"pending", "running", "failed", "done"}
    assert stats["main"].done_last_minute == 60  # finished 1..300 s ago, the last minute's worth
    assert stats["tgms"].failed == 1 and stats["tgms"].running == 1
    assert len(groups) == 5 and next(g for g in groups if g.group_id == GROUPS["alpha"]).member_trend == 134
    assert {w.bot_name: w.is_stale for w in workers} == {"tgms_worker": False, "main_worker": True}


async def test_a_partial_reload_reads_the_same_rows_as_the_full_one(db_url: str, pool: AsyncConnectionPool) -> None:
    """A NOTIFY-driven reload of a few groups must give rows equal to the full reload's, or every
    refresh would redraw every group. The last broadcast's time (read as seconds for speed) is the
    stored instant."""
    seed(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE managed_groups SET last_broadcast_at = '2026-03-04 05:06:07.123456+00' WHERE title ~ '^Beta'"
        )
    async with pool.connection() as conn:
        full = {g.group_id: g for g in await dashboard.fetch_groups(conn)}
        partial = {g.group_id: g for g in await dashboard.fetch_groups_by_id(conn, full)}
    assert full == partial and len(full) == 5
    assert full[GROUPS["beta"]].last_broadcast_at == datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=UTC)
    assert full[GROUPS["gamma"]].last_broadcast_at is None


async def test_failed_jobs_are_counted_up_to_a_cap(db_url: str, pool: AsyncConnectionPool) -> None:
    """A refresh counts failed jobs only up to the cap ("1,000+"), so its cost stays flat while the
    history holds millions; below the cap the count is exact, per pool."""
    cap = dashboard.FAILED_COUNT_CAP
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO jobs (job_type, status, finished_at) "
            "SELECT 'tgms_process_join_request', 'failed', now() - interval '2 hours' FROM generate_series(1, %s)",
            (cap + 50,),
        )
        conn.execute(
            "INSERT INTO jobs (job_type, status, finished_at) "
            "SELECT 'process_telegram_update', 'failed', now() - interval '2 hours' FROM generate_series(1, 7)"
        )
    async with pool.connection() as conn:
        stats = {s.pool: s for s in await dashboard.fetch_pool_stats(conn)}
    assert stats["tgms"].failed == cap + 1 and stats["main"].failed == 7
    assert fmt.capped_count(stats["tgms"].failed, cap) == f"{cap:,}+"
    assert fmt.capped_count(stats["main"].failed, cap) == "7"
    assert fmt.capped_count(cap, cap) == f"{cap:,}"


async def test_group_actions_and_detail(db_url: str, pool: AsyncConnectionPool) -> None:
    seed(db_url)
    alpha = GROUPS["alpha"]
    async with pool.connection() as conn:
        await group_actions.set_active(conn, alpha, False, reason="test")
        await group_actions.set_phase(conn, alpha, "monitoring")
        await group_actions.set_final_message_allowed(conn, alpha, True)
        job = await group_actions.request_member_count_refresh(conn, alpha)
        again = await group_actions.request_member_count_refresh(conn, alpha)  # no dedupe: a second one
        detail = await group_actions.fetch_group_detail(conn, alpha)
    assert again != job
    g = detail.group
    assert (g.is_active, g.phase, g.final_message_allowed, g.deactivated_reason) == (False, "monitoring", True, "test")
    assert len(detail.history) == 10 and detail.history[0].recorded_at < detail.history[-1].recorded_at
    assert len(detail.join_requests) == 1 and len(detail.kicks) == 1
    async with pool.connection() as conn:
        try:
            await group_actions.set_phase(conn, -1, "growth")
        except group_actions.GroupNotFound:
            pass
        else:
            raise AssertionError("a missing group must raise GroupNotFound")


async def test_change_listener_reports_tables_and_group_ids(db_url: str) -> None:
    seen: list[tuple[str, str]] = []
    states: list[bool] = []
    listener = ChangeListener(
        db_url, lambda channel, payload: seen.append((channel, payload)), lambda ok, err: states.append(ok)
    )
    task = asyncio.create_task(listener.run())
    try:
        for _ in range(100):
            if states:
                break
            await asyncio.sleep(0.05)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("INSERT INTO managed_groups (group_id) VALUES (-5), (-6)")
            conn.execute("UPDATE managed_groups SET title = 'x' WHERE group_id = -404")  # no row: no ids notice
            conn.execute("INSERT INTO bot_health (worker_id, bot_name, status) VALUES ('w', 'tgms_worker', 'x')")
            conn.execute("INSERT INTO managed_groups (group_id) SELECT -1000 - n FROM generate_series(1, 500) n")
            conn.execute("DELETE FROM managed_groups WHERE group_id = -5")
        for _ in range(100):
            if ("tgms_groups", "d:-5") in seen:
                break
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
    assert states[0] is True
    assert seen[0] == ("tgms_changes", "*")  # after connecting: everything may have changed
    groups = [payload for channel, payload in seen if channel == "tgms_groups"]
    tables = [payload for channel, payload in seen[1:] if channel == "tgms_changes"]
    assert groups[0] in ("u:-5,-6", "u:-6,-5")
    assert groups[1:] == ["*", "d:-5"]  # 500 ids do not fit a NOTIFY: "read them all"
    assert tables[:3] == ["managed_groups", "managed_groups", "bot_health"]


async def test_live_view_notices_only_while_a_listener_is_registered(db_url: str) -> None:
    """No control center open: the change triggers send nothing (a NOTIFY costs every listening
    session); a stopped listener takes its registration with it, and a dead one's is cleared."""
    plain = await psycopg.AsyncConnection.connect(db_url, autocommit=True)
    try:
        await plain.execute("LISTEN tgms_changes")
        await plain.execute("LISTEN tgms_groups")
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("INSERT INTO change_listeners (pid) VALUES (2147483000)")  # a session long gone
            conn.execute("INSERT INTO managed_groups (group_id) VALUES (-7)")  # heard: a row is there
            assert [n.payload async for n in plain.notifies(timeout=0.5)] == ["managed_groups", "u:-7"]
            states: list[bool] = []
            listener = ChangeListener(db_url, lambda channel, payload: None, lambda ok, err: states.append(ok))
            task = asyncio.create_task(listener.run())
            for _ in range(100):
                if states:
                    break
                await asyncio.sleep(0.05)
            [(pid,)] = conn.execute("SELECT pid FROM change_listeners").fetchall()  # the dead one went
            assert pid != 2147483000
            conn.execute("UPDATE managed_groups SET title = 'x' WHERE group_id = -7")
            assert [n.payload async for n in plain.notifies(timeout=0.5)] == ["managed_groups", "u:-7"]
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            assert conn.execute("SELECT count(*) FROM change_listeners").fetchone() == (0,)
            conn.execute("UPDATE managed_groups SET title = 'y' WHERE group_id = -7")
            conn.execute("INSERT INTO bot_health (worker_id, bot_name, status) VALUES ('w', 'tgms_worker', 'x')")
            assert [n.payload async for n in plain.notifies(timeout=0.5)] == []
    finally:
        await plain.close()


async def test_refresh_scheduler_coalesces_holds_and_retries() -> None:
    calls: list[frozenset[str]] = []
    fail_next = [False]

    async def refresh(stale: frozenset[str]) -> bool:
        calls.append(stale)
        if fail_next[0]:
            fail_next[0] = False
            return False
        return True

    async def until(count: int) -> None:
        for _ in range(400):
            if len(calls) >= count:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} refreshes, got {calls}")

    scheduler = RefreshScheduler(refresh, {"a", "b"}, min_gap=0.05, period=30.0, max_backoff=0.05)
    task = asyncio.create_task(scheduler.run())
    try:
        await until(1)
        assert calls == [frozenset({"a", "b"})]  # the initial load
        for _ in range(50):  # a burst of notices between two refreshes ...
            scheduler.mark("a")
        await until(2)
        await asyncio.sleep(0.15)
        assert calls[1:] == [frozenset({"a"})]  # ... costs one refresh, not fifty

        scheduler.hold(True)
        scheduler.mark("b")
        await asyncio.sleep(0.15)
        assert len(calls) == 2  # held: nothing refreshes
        fail_next[0] = True
        scheduler.hold(False)
        await until(4)
        assert calls[2:] == [frozenset({"b"}), frozenset({"b"})]  # failed once, retried without a new notice
    finally:
        task.cancel()
