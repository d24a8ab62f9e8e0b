"""Control-center benchmark: the real TGMSApp on 10,000 groups and 100,000 jobs.

Measures, on the real app (headless, 140x45) against a seeded PostgreSQL:
- refresh (queries + table update): the 2 s tick (jobs, workers, join requests), a groups NOTIFY
  naming 50 changed groups, and the full refresh of all panes incl. every group (at start, after a
  reconnect, every 30 s); each also until the next frame is on screen;
- key-press-to-screen: a key event handed to the driver until the frame showing its effect;
- change visible: a row committed by another connection until the frame showing it (NOTIFY path);
- RSS of the process running the app.
Baselines in the same run, same data: the obvious query (count every job by pool and status) against
ours (partial indexes), and Textual's DataTable against our LiveTable for loading, updating and sorting
the 10,000-row groups table.

"On screen" = the frame Textual hands to its driver (`App._display`), with its terminal bytes encoded,
as a real terminal would get them. Headless means no terminal emulator time.

Usage: ./dev.sh bench tui_bench [--groups 10000] [--jobs 100000] [--repeat 30]
Uses TGMS_BENCH_DATABASE_URL when set (a server URL; a database is created on it), else a throwaway
embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_server, migrated_database
from textual import events
from textual.app import App, ComposeResult
from textual.widgets import DataTable, Input

from tests.support import percentile
from tgms_tui.app import TGMSApp
from tgms_tui.backend import dashboard
from tgms_tui.backend.config import Settings
from tgms_tui.screens.dashboard import PANES, TICK_PANES, DashboardScreen, load_panes
from tgms_tui.widgets.panes import GroupsTable, JoinRequestsTable

TARGETS = {"refresh": 50.0, "key": 50.0, "change": 250.0, "rss": 200.0}

SEED_SQL = """
INSERT INTO managed_groups (group_id, title, phase, is_active, final_message_allowed, member_count,
                            consecutive_failures, deactivated_reason, last_broadcast_at)
SELECT -1001000000000 - n,
       'Group ' || n || ' ' || (ARRAY['crypto', 'travel', 'jobs', 'news', 'music', 'books'])[1 + mod(n, 6)],
       CASE WHEN mod(n, 3) = 0 THEN 'monitoring' ELSE 'growth' END,
       mod(n, 20) <> 0, mod(n, 7) = 0, 50 + mod(n * 7919, 20000),
       CASE WHEN mod(n, 33) = 0 THEN 1 + mod(n, 3) ELSE 0 END,
       CASE WHEN mod(n, 20) = 0 THEN 'bot was kicked' END,
       CASE WHEN mod(n, 4) = 0 THEN now() - make_interval(mins => mod(n, 5000)) END
  FROM generate_series(1, %(groups)s) AS n;
-- a second count, so the trend column has something to show (migration 005 keeps the previous one)
UPDATE managed_groups SET member_count = member_count + mod(group_id, 41)::int + 20;

INSERT INTO jobs (job_type, payload, status, retries, max_retries, last_error, run_at, created_at, updated_at,
                  finished_at, locked_by, locked_until)
SELECT CASE WHEN s = 'done' AND mod(n, 3) = 0 THEN 'process_telegram_update'
            WHEN mod(n, 2) = 0 THEN 'tgms_process_join_request' ELSE 'tgms_send_to_groups' END,
       jsonb_build_object('n', n),
       s,
       CASE WHEN s = 'failed' THEN 5 ELSE 0 END, 5,
       CASE WHEN s = 'failed' THEN 'Forbidden: bot was kicked from the supergroup chat' END,
       CASE WHEN s = 'pending' AND mod(n, 2) = 0 THEN now() + interval '1 hour'
            ELSE now() - make_interval(secs => mod(n, 600)) END,
       now() - make_interval(secs => mod(n, 86400)), now() - make_interval(secs => mod(n, 86400)),
       CASE WHEN s IN ('done', 'failed', 'cancelled') THEN now() - make_interval(secs => mod(n, 86400)) END,
       CASE WHEN s = 'running' THEN 'tgms_worker@bench:1' END,
       CASE WHEN s = 'running' THEN now() + interval '1 minute' END
  FROM (SELECT n, CASE WHEN mod(n, 100) < 90 THEN 'done' WHEN mod(n, 100) < 93 THEN 'failed'
                       WHEN mod(n, 100) < 96 THEN 'pending' WHEN mod(n, 1000) < 961 THEN 'running'
                       ELSE 'cancelled' END AS s
          FROM generate_series(1, %(jobs)s) AS n) AS t;

INSERT INTO bot_health (worker_id, bot_name, status, updated_at, pid, host, jobs_done, jobs_failed)
SELECT (CASE WHEN n <= 2 THEN 'main_worker' ELSE 'tgms_worker' END) || '@bench:' || n,
       CASE WHEN n <= 2 THEN 'main_worker' ELSE 'tgms_worker' END, 'running',
       now() - make_interval(secs => CASE WHEN n = 6 THEN 120 ELSE 1 END), n, 'bench', n * 1000, n
  FROM generate_series(1, 6) AS n;

INSERT INTO join_requests (user_id, chat_id, username, status, requested_at, processed_at)
SELECT 100000 + n, -1001000000000 - (1 + mod(n, %(groups)s)), 'user' || n,
       (ARRAY['approved', 'approved', 'approved', 'skipped_inactive', 'failed'])[1 + mod(n, 5)],
       now() - make_interval(secs => n), now() - make_interval(secs => n)
  FROM generate_series(1, 5000) AS n;
"""


def seed(url: str, groups: int, jobs: int) -> float:
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in SEED_SQL.split(";\n"):
            if statement.strip():
                conn.execute(statement, {"groups": groups, "jobs": jobs})
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - t0


class Tick(NamedTuple):
    """A moment: wall clock and this process's CPU time (the app runs in this process)."""

    wall: float
    cpu: float

    def until(self, later: Tick) -> Sample:
        return Sample((later.wall - self.wall) * 1000, (later.cpu - self.cpu) * 1000)


class Sample(NamedTuple):
    wall_ms: float
    cpu_ms: float


def now() -> Tick:
    return Tick(time.perf_counter(), time.process_time())


class Frames:
    """Timestamps every frame the app hands to its driver; can wait for a frame where a condition holds."""

    def __init__(self, app: TGMSApp) -> None:
        self.app = app
        self.count = 0
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[Tick]]] = []
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            original(screen, renderable)
            if renderable is None or app._batch_count:
                return
            render = getattr(renderable, "render_segments", None)
            if render is not None:
                render(app.console)  # the terminal bytes a real driver would write
            tick = now()
            self.count += 1
            for waiter in list(self._waiters):
                condition, future = waiter
                if not future.done() and condition():
                    future.set_result(tick)
                    self._waiters.remove(waiter)

        app._display = display  # type: ignore[method-assign]

    async def until(self, condition: Callable[[], bool], timeout: float = 10.0) -> Tick:
        future: asyncio.Future[Tick] = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, future))
        return await asyncio.wait_for(future, timeout)


def send_key(app: TGMSApp, key: str, char: str | None) -> None:
    event = events.Key(key, char)
    event.set_sender(app)
    assert app._driver is not None
    app._driver.send_message(event)


Row = tuple[str, str, str, str, str, str]


async def run(url: str, repeat: int) -> list[Row]:
    rows: list[Row] = []
    process = psutil.Process()

    def add(name: str, values: list[Sample] | Sample | float, target: float | None = None, unit: str = "ms") -> None:
        if isinstance(values, float):  # a size, not a duration
            ok = "" if target is None else ("ok" if values <= target else "MISSED")
            rows.append((name, f"{values:.1f} {unit}", "", "", "" if target is None else f"≤ {target:g}", ok))
            return
        samples = values if isinstance(values, list) else [values]
        walls = [v.wall_ms for v in samples]
        median = statistics.median(walls)
        ok = "" if target is None else ("ok" if median <= target else "MISSED")
        rows.append(
            (
                name,
                f"{median:.1f}",
                f"{percentile(walls, 0.95):.1f}" if len(samples) > 1 else "",
                f"{statistics.median(v.cpu_ms for v in samples):.1f}",
                "" if target is None else f"≤ {target:g}",
                ok,
            )
        )

    def ratio(name: str, slow: list[Sample] | Sample, fast: list[Sample] | Sample) -> None:
        def med(v: list[Sample] | Sample) -> float:
            return statistics.median(x.wall_ms for x in (v if isinstance(v, list) else [v]))

        rows.append((name, f"{med(slow) / med(fast):.1f}x", "", "", "", ""))

    # ---- queries alone, and the naive baseline
    async with await psycopg.AsyncConnection.connect(url) as conn:
        ours: list[Sample] = []
        for _ in range(repeat):
            t0 = now()
            await load_panes(conn, frozenset(PANES))
            await conn.commit()
            ours.append(t0.until(now()))
        stats_ours: list[Sample] = []
        stats_naive: list[Sample] = []
        for _ in range(repeat):
            t0 = now()
            await dashboard.fetch_pool_stats(conn)
            stats_ours.append(t0.until(now()))
            t0 = now()
            cur = await conn.execute("SELECT pool, status, count(*) FROM jobs GROUP BY pool, status")
            await cur.fetchall()
            stats_naive.append(t0.until(now()))

    rss_before = process.memory_info().rss / 2**20
    app = TGMSApp(url=url, settings=Settings(), refresh_period=2.0)
    async with app.run_test(size=(140, 45)) as pilot:
        frames = Frames(app)
        t_start = now()
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        groups = screen.query_one(GroupsTable)
        joins = screen.query_one(JoinRequestsTable)
        first = await frames.until(lambda: groups.row_count > 0 and joins.row_count > 0, timeout=120)
        await pilot.pause(0.5)
        initial_ms = t_start.until(first)
        scheduler = screen.scheduler
        assert scheduler is not None

        # ---- refreshes: query + table update (live updates held so that nothing interleaves)
        scheduler.hold(True)
        await asyncio.sleep(0.3)

        async def timed_refresh(panes: frozenset[str]) -> tuple[Sample, Sample]:
            before = frames.count
            t0 = now()
            assert await screen._refresh(panes)
            done = t0.until(now())
            shown = await frames.until(lambda: frames.count > before, timeout=10)
            return done, t0.until(shown)

        tick, tick_screen, full, full_screen, by_id = [], [], [], [], []
        for _ in range(repeat):
            a, b = await timed_refresh(frozenset(TICK_PANES))
            tick.append(a)
            tick_screen.append(b)
            await asyncio.sleep(0.02)
        for _ in range(max(5, repeat // 2)):
            a, b = await timed_refresh(frozenset(PANES))
            full.append(a)
            full_screen.append(b)
            await asyncio.sleep(0.02)
        rng = random.Random(7)
        with psycopg.connect(url, autocommit=True) as writer:
            for _ in range(repeat):
                ids = [-1001000000000 - i for i in rng.sample(range(1, 10_001), 50)]
                writer.execute(
                    "UPDATE managed_groups SET member_count = member_count + 1, consecutive_failures = "
                    "mod(consecutive_failures + 1, 3) WHERE group_id = ANY(%s)",
                    (ids,),
                )
                screen._changed_groups.update(ids)  # what the 'tgms_groups' NOTIFY names
                a, _ = await timed_refresh(frozenset({"group_rows"}))
                by_id.append(a)
        rss_loaded = process.memory_info().rss / 2**20

        # ---- key press to screen
        groups.focus()
        await asyncio.sleep(0.2)
        keys: dict[str, list[Sample]] = {
            "j / k (cursor)": [],
            "s (sort 10k rows)": [],
            "tab (focus next pane)": [],
            "p (pause / resume)": [],
        }
        for i in range(repeat):
            key = "j" if i % 2 == 0 else "k"
            row = groups.cursor_row
            t0 = now()
            send_key(app, key, key)
            shown = await frames.until(lambda r=row: groups.cursor_row != r)  # type: ignore[misc]
            keys["j / k (cursor)"].append(t0.until(shown))
            await asyncio.sleep(0.03)
        for _ in range(max(5, repeat // 3)):
            column = groups.sort_column
            t0 = now()
            send_key(app, "s", "s")
            shown = await frames.until(lambda c=column: groups.sort_column != c)  # type: ignore[misc]
            keys["s (sort 10k rows)"].append(t0.until(shown))
            await asyncio.sleep(0.05)
        for _ in range(max(5, repeat // 3)):
            focused = app.focused
            t0 = now()
            send_key(app, "tab", None)
            shown = await frames.until(lambda f=focused: app.focused is not f)  # type: ignore[misc]
            keys["tab (focus next pane)"].append(t0.until(shown))
            await asyncio.sleep(0.03)
        for _ in range(max(4, repeat // 3)):
            paused = screen.paused
            t0 = now()
            send_key(app, "p", "p")
            shown = await frames.until(lambda p=paused: screen.paused != p)  # type: ignore[misc]
            keys["p (pause / resume)"].append(t0.until(shown))
            await asyncio.sleep(0.03)
        if screen.paused:
            send_key(app, "p", "p")
        filter_ms: list[Sample] = []
        groups.focus()
        send_key(app, "slash", "/")
        while not isinstance(app.focused, Input):  # the filter box has the keyboard
            await asyncio.sleep(0.01)
        for char in "crypto":  # each keystroke narrows the 10k-row table in place
            t0 = now()
            send_key(app, char, char)
            target = groups.filter_text + char
            shown = await frames.until(lambda t=target: groups.filter_text == t, timeout=30)  # type: ignore[misc]
            filter_ms.append(t0.until(shown))
            await asyncio.sleep(0.05)
        t0 = now()
        send_key(app, "escape", None)
        shown = await frames.until(lambda: groups.filter_text == "", timeout=30)
        unfilter_ms = t0.until(shown)
        await asyncio.sleep(0.5)

        # ---- a change committed elsewhere until it is on screen (NOTIFY -> throttle -> query -> frame)
        scheduler.hold(False)
        await asyncio.sleep(2.5)
        visible_join, visible_group = [], []
        with psycopg.connect(url, autocommit=True) as writer:
            for i in range(max(5, repeat // 2)):
                await asyncio.sleep(0.4)
                t0 = now()
                inserted = writer.execute(
                    "INSERT INTO join_requests (user_id, chat_id, username, status, processed_at) "
                    "VALUES (%s, -1001000000001, 'bench', 'approved', now()) RETURNING request_id",
                    (900000 + i,),
                ).fetchone()
                assert inserted is not None
                key = str(inserted[0])
                shown = await frames.until(lambda k=key: k in joins.items)  # type: ignore[misc]
                visible_join.append(t0.until(shown))
            for i in range(max(5, repeat // 2)):
                await asyncio.sleep(0.4)
                title = f"Renamed {i}"
                gid = -1001000000000 - (1 + i * 97)
                t0 = now()
                writer.execute("UPDATE managed_groups SET title = %s WHERE group_id = %s", (title, gid))
                shown = await frames.until(
                    lambda g=str(gid), t=title: g in groups.items and groups.items[g].title == t  # type: ignore[misc]
                )
                visible_group.append(t0.until(shown))
        # Steady state: RSS after a minute's worth of live refreshes.
        for _ in range(30):
            assert await screen._refresh(frozenset(PANES))
        await pilot.pause(0.2)
        rss_after = process.memory_info().rss / 2**20

    add("startup: first full dashboard on screen", initial_ms)
    add("refresh every 2 s: jobs + workers + joins panes", tick, TARGETS["refresh"])
    add("  ... until the frame is on screen", tick_screen)
    add("refresh on a groups NOTIFY: 50 changed groups", by_id, TARGETS["refresh"])
    add("full refresh, 4 panes + all 10k groups (30 s)", full, TARGETS["refresh"])
    add("  of which: the pane queries alone", ours)
    add("  ... until the frame is on screen", full_screen)
    for name, values in keys.items():
        add(f"key to screen: {name}", values, TARGETS["key"])
    add("key to screen: / filter, per keystroke (10k rows)", filter_ms, TARGETS["key"])
    add("key to screen: escape clears the filter (10k back)", unfilter_ms)
    add("change visible: join request inserted", visible_join, TARGETS["change"])
    add("change visible: group renamed (10k-row pane)", visible_group, TARGETS["change"])
    add("RSS before the app (bench + libraries)", rss_before, unit="MB")
    add("RSS with 10k groups loaded", rss_loaded, TARGETS["rss"], unit="MB")
    add("RSS after 30 more full refreshes", rss_after, TARGETS["rss"], unit="MB")
    rows.append(("baselines (same data, same run)", "", "", "", "", ""))
    add("  job counts, ours (partial indexes)", stats_ours)
    add("  job counts, naive GROUP BY over all jobs", stats_naive)
    ratio("  ratio naive / ours", stats_naive, stats_ours)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        groups_rows = await dashboard.fetch_groups(conn)
    ours_table = await table_costs(groups_rows, datatable=False)
    theirs = await table_costs(groups_rows, datatable=True)
    for what in ours_table:
        add(f"  {what}: LiveTable (ours)", ours_table[what])
        add(f"  {what}: Textual DataTable", theirs[what])
        ratio("  ratio DataTable / ours", theirs[what], ours_table[what])
    return rows


class _TableApp(App[None]):
    """Just one 10k-row table, ours or Textual's DataTable, for the side-by-side baseline."""

    def __init__(self, datatable: bool) -> None:
        super().__init__()
        self.datatable = datatable

    def compose(self) -> ComposeResult:
        if self.datatable:
            yield DataTable(cursor_type="row")
        else:
            yield GroupsTable(id="groups")


async def table_costs(groups_rows: list[Any], *, datatable: bool) -> dict[str, list[Sample]]:
    """Load 10k groups, change 50 of them, sort: each until the frame is on screen (median of 3)."""
    app = _TableApp(datatable)
    costs: dict[str, list[Sample]] = {"load 10k groups": [], "50 rows changed": [], "sort by members": []}
    formatter = GroupsTable()  # its cells() are the same Text cells for both tables
    columns = [c.key for c in GroupsTable.COLUMNS]
    async with app.run_test(size=(140, 45)) as pilot:
        frames = Frames(app)  # type: ignore[arg-type]
        table: Any = app.query_one(DataTable if datatable else GroupsTable)
        if datatable:
            for column in GroupsTable.COLUMNS:
                table.add_column(column.label, key=column.key, width=column.width)
        rng = random.Random(3)
        for attempt in range(3):
            n = frames.count
            t0 = now()
            if datatable:
                table.clear()
                for g in groups_rows:
                    table.add_row(*formatter.cells(g), key=str(g.group_id))
            else:
                table.show([])
                table.show(groups_rows)
            await frames.until(lambda n=n: frames.count > n, timeout=120)  # type: ignore[misc]
            await pilot.pause(0.3)  # DataTable measures new rows when idle: let it finish
            costs["load 10k groups"].append(t0.until(now()))
            changed = list(groups_rows)
            touched = rng.sample(range(len(changed)), 50)
            for i in touched:
                changed[i] = changed[i]._replace(member_count=(changed[i].member_count or 0) + 1 + attempt)
            n = frames.count
            t0 = now()
            if datatable:
                for i in touched:
                    g = changed[i]
                    table.update_cell(str(g.group_id), "members", formatter.cells(g)[columns.index("members")])
            else:
                table.show(changed)
            await frames.until(lambda n=n: frames.count > n, timeout=60)  # type: ignore[misc]
            costs["50 rows changed"].append(t0.until(now()))
            n = frames.count
            t0 = now()
            if datatable:
                by_id = {str(g.group_id): g.member_count or 0 for g in changed}
                table.sort("id", key=lambda cell: by_id[cell], reverse=attempt % 2 == 0)
            else:
                table.set_sort("members", reverse=attempt % 2 == 0)
            await frames.until(lambda n=n: frames.count > n, timeout=60)  # type: ignore[misc]
            costs["sort by members"].append(t0.until(now()))
    return costs


HEADINGS = ("metric", "median ms", "p95 ms", "CPU ms", "target", "")


def print_table(rows: list[Row], header: str) -> None:
    print(header)
    print("(wall-clock times; CPU = this process's CPU time in that span: the app's own work, which a busy")
    print(" machine does not inflate the way it inflates wall-clock time)")
    widths = [max(len(r[i]) for r in [*rows, HEADINGS]) for i in range(6)]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADINGS, widths, strict=True))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    with bench_server() as server, migrated_database(server.url, "tgms_tui_bench") as url:
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()
        seeded = seed(url, args.groups, args.jobs)
        import textual

        rows = asyncio.run(run(url, args.repeat))
        header = (
            f"TGMS control center benchmark: {args.groups:,} groups, {args.jobs:,} jobs (seeded in {seeded:.1f} s), "
            f"140x45 headless, textual {textual.__version__}, PostgreSQL {version[0] if version else '?'}, "
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        print_table(rows, header)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
