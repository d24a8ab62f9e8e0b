"""What the control center shows is the whole truth: filters search the table, not the window on it;
feeds follow new rows; tries, errors, workers and broadcast targets read as they are."""

from __future__ import annotations

import psycopg
from psycopg_pool import AsyncConnectionPool
from textual.containers import VerticalScroll
from textual.widgets import Label, Select, Static

from tgms_tui.backend import dashboard
from tgms_tui.screens.composer import ComposerScreen
from tgms_tui.screens.help import HelpScreen
from tgms_tui.screens.job_detail import JobDetailScreen
from tgms_tui.widgets.live_table import strip_text
from tgms_tui.widgets.panes import GroupsTable, JobsTable, JoinRequestsTable, WorkersTable

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS, seed

# 300 finished jobs push the old ones out of the pane's window (40 per status); one of them is special.
HISTORY_SQL = """
INSERT INTO jobs (job_type, status, finished_at, updated_at, last_error)
VALUES ('tgms_kick_inactive_members', 'done', now() - interval '2 days', now() - interval '2 days',
        'deep needle_in 50% of the haystack');
INSERT INTO jobs (job_type, status, finished_at, updated_at)
SELECT 'process_telegram_update', 'done', now() - make_interval(secs => n), now() - make_interval(secs => n)
  FROM generate_series(1, 300) AS n;
INSERT INTO join_requests (user_id, chat_id, username, status, requested_at, processed_at)
SELECT 1000 + n, -1001000000001, CASE WHEN n = 1 THEN 'old_needle' ELSE 'user' || n END, 'approved',
       now() - make_interval(hours => 500 - n), now() - make_interval(hours => 500 - n)
  FROM generate_series(1, 200) AS n;
"""


def run_sql(url: str, sql: str, *params: object) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in filter(str.strip, sql.split(";\n")):
            conn.execute(statement, params or None)


def one(url: str, sql: str, *params: object) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])


async def test_search_reads_the_table_not_the_window(db_url: str, pool: AsyncConnectionPool) -> None:
    seed(db_url)
    run_sql(db_url, HISTORY_SQL)
    deep = one(db_url, "SELECT job_id FROM jobs WHERE job_type = 'tgms_kick_inactive_members'")
    oldest = one(
        db_url, "SELECT job_id FROM jobs WHERE job_type = 'process_telegram_update' ORDER BY finished_at LIMIT 1"
    )
    async with pool.connection() as conn:
        window = {j.job_id for j in await dashboard.fetch_recent_jobs(conn)}
        assert deep not in window and oldest not in window
        by_text = await dashboard.fetch_recent_jobs(conn, search="NEEDLE_in 50%")
        by_id = await dashboard.fetch_recent_jobs(conn, search=str(oldest))
        by_type = await dashboard.fetch_recent_jobs(conn, search="kick_inactive")
        by_status = await dashboard.fetch_recent_jobs(conn, search="failed")
        wildcard = await dashboard.fetch_recent_jobs(conn, search="needle%in")  # % is a character, not "any"
        joins = await dashboard.fetch_join_requests(conn, search="old_needle")
        by_group = await dashboard.fetch_join_requests(conn, search="alpha grow")
    assert [j.job_id for j in by_text] == [deep]
    assert [j.job_id for j in by_id] == [oldest]
    assert [j.job_id for j in by_type] == [deep]
    assert {j.status for j in by_status} == {"failed"}
    assert wildcard == []
    assert [r.username for r in joins] == ["old_needle"]
    assert len(by_group) == 100 and {r.chat_id for r in by_group} == {GROUPS["alpha"]}


async def test_filter_finds_jobs_and_join_requests_outside_the_window(db_url: str) -> None:
    seed(db_url)
    run_sql(db_url, HISTORY_SQL)
    deep = one(db_url, "SELECT job_id FROM jobs WHERE job_type = 'tgms_kick_inactive_members'")
    app = make_app(db_url)
    async with app.run_test(size=SIZE) as pilot:
        jobs = app.screen.query_one(JobsTable)
        joins = app.screen.query_one(JoinRequestsTable)
        await wait_until(pilot, lambda: jobs.row_count > 40 and joins.row_count == 100, what="windows")
        assert str(deep) not in jobs.items
        await pilot.press("2", "slash", *"needle", "enter")
        await wait_until(pilot, lambda: jobs.shown_keys() == [str(deep)], what="the deep job")
        assert "filter “needle” in db" in jobs.pane_title
        await pilot.press("escape")  # back to the window
        await wait_until(pilot, lambda: jobs.row_count > 40 and str(deep) not in jobs.items, what="window again")

        await pilot.press("slash", *str(deep), "enter")  # by id
        await wait_until(pilot, lambda: jobs.shown_keys() == [str(deep)], what="the job by id")
        await pilot.press("escape")

        await pilot.press("4", "slash", *"old_needle", "enter")
        await wait_until(pilot, lambda: [r.username for r in joins.items.values()] == ["old_needle"], what="join")


async def test_feeds_follow_new_rows_while_the_cursor_is_on_the_newest(seeded_url: str) -> None:
    app = make_app(seeded_url, refresh_period=60.0)
    async with app.run_test(size=SIZE) as pilot:
        joins = app.screen.query_one(JoinRequestsTable)
        jobs = app.screen.query_one(JobsTable)
        await wait_until(pilot, lambda: joins.row_count == 3 and jobs.row_count == 4)
        await pilot.press("4")
        assert joins.cursor_row == 0 and joins.following == "top"

        def add_request(user: int) -> str:
            with psycopg.connect(seeded_url, autocommit=True) as conn:
                row = conn.execute(
                    "INSERT INTO join_requests (user_id, chat_id, username, status, processed_at) "
                    "VALUES (%s, %s, 'new', 'approved', now()) RETURNING request_id",
                    (user, GROUPS["delta"]),
                ).fetchone()
            assert row is not None
            return str(row[0])

        newest = add_request(90)
        await wait_until(pilot, lambda: newest in joins.items, what="new request")
        assert joins.cursor_key == newest, "on the newest row, the cursor follows new rows"
        # Moved away: the cursor stays on its row, new rows come in above it.
        await pilot.press("j")
        kept = joins.cursor_key
        assert joins.following is None
        newer = add_request(91)
        await wait_until(pilot, lambda: newer in joins.items, what="newer request")
        assert joins.cursor_key == kept
        # Back on top: following again.
        await pilot.press("g")
        newest = add_request(92)
        await wait_until(pilot, lambda: newest in joins.items, what="newest request")
        assert joins.cursor_key == newest

        # Jobs: failed first, newest first; a new failure is the top row and the cursor goes with it.
        await pilot.press("2")
        assert jobs.cursor_row == 0
        with psycopg.connect(seeded_url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO jobs (job_type, status, retries, last_error, finished_at) "
                "VALUES ('tgms_send_to_groups', 'failed', 6, 'new failure', now()) RETURNING job_id"
            ).fetchone()
        assert row is not None
        await wait_until(pilot, lambda: str(row[0]) in jobs.items, what="new failed job")
        assert jobs.cursor_key == str(row[0])
        assert jobs.move_to_key(str(row[0])) and jobs.cursor_row == 0


async def test_tries_and_previous_errors_read_as_they_are(seeded_url: str) -> None:
    # A job that failed once and then succeeded: its last_error is history, not its state.
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO jobs (job_type, status, retries, max_retries, last_error, finished_at) "
            "VALUES ('tgms_send_to_groups', 'done', 2, 5, 'Bad Gateway', now()) RETURNING job_id"
        ).fetchone()
        assert row is not None
        done = str(row[0])
        failed = conn.execute("SELECT job_id FROM jobs WHERE status = 'failed'").fetchone()
        assert failed is not None
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        jobs = app.screen.query_one(JobsTable)
        await wait_until(pilot, lambda: done in jobs.items)
        assert jobs.get_cell(str(failed[0]), "retries").plain == "6/6"  # exhausted: never 6/5
        assert jobs.get_cell(done, "retries").plain == "3/6"  # two failed tries, the third succeeded
        assert jobs.get_cell(done, "error").plain == "previous: Bad Gateway"
        pending = next(k for k, j in jobs.items.items() if j.status == "pending")
        assert jobs.get_cell(pending, "retries").plain == "0/6"

        await pilot.press("2")
        jobs.move_to_key(done)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        error = app.screen.query_one("#job-error", Static)
        await wait_until(pilot, lambda: "Bad Gateway" in str(error.render()), what="job detail")
        shown = str(error.render())
        assert shown.startswith("Error: none (succeeded on try 3/6). History, from an earlier try: Bad Gateway")
        assert "tries 3/6 (the first run and up to 5 retries)" in str(app.screen.query_one("#job-facts").render())
        await pilot.press("escape")

        jobs.move_to_key(str(failed[0]))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        error = app.screen.query_one("#job-error", Static)
        await wait_until(pilot, lambda: "bot was kicked" in str(error.render()), what="failed job detail")
        assert str(error.render()).startswith("Error (why it failed): Forbidden")
        assert "tries 6/6" in str(app.screen.query_one("#job-facts").render())


async def test_help_says_when_it_scrolls(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=(100, 30)) as pilot:  # too small for the whole list
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        box = help_screen.query_one("#help-box", VerticalScroll)
        await wait_until(pilot, lambda: box.border_subtitle is not None, what="scroll hint")
        assert help_screen.more_below and "more below" in str(box.border_subtitle)
        await pilot.press("end")
        await wait_until(pilot, lambda: "end of the list" in str(box.border_subtitle), what="end hint")
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:  # 140x45: the hint shows exactly when there is more
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause(0.2)
        box = app.screen.query_one("#help-box", VerticalScroll)
        assert (box.max_scroll_y > 0) == (box.border_subtitle is not None), (box.max_scroll_y, box.border_subtitle)


async def worker_line(url: str, size: tuple[int, int], key: str) -> str:
    """The workers pane's line for `key`, as drawn at `size`."""
    app = make_app(url)
    async with app.run_test(size=size) as pilot:
        workers = app.screen.query_one(WorkersTable)
        await wait_until(pilot, lambda: key in workers.items)
        await pilot.pause(0.1)
        return strip_text(workers.render_line(1 + workers.shown_keys().index(key)))


async def test_workers_pane_keeps_host_and_pid(seeded_url: str) -> None:
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO bot_health (worker_id, bot_name, status, pid, host) "
            "VALUES ('w', 'tgms_worker', 'running', 4194303, 'ip-10-20-30-40.eu-west-1.compute.internal')"
        )
    for size in (SIZE, (100, 30)):
        line = await worker_line(seeded_url, size, "w")
        # At 140 columns the short host name and the pid; at 100 the name is cut, the pid never.
        expected = "tgms ip…-30-40:4194303" if size == SIZE else "tgms…:4194303"
        assert expected in line, line


async def test_b_targets_the_marked_groups(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        groups.move_to_key(str(GROUPS["alpha"]))
        await pilot.press("space")
        groups.move_to_key(str(GROUPS["delta"]))
        await pilot.press("space", "b")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposerScreen))
        composer = app.screen
        assert isinstance(composer, ComposerScreen)
        assert composer.query_one("#target", Select).value == "groups"
        assert composer.target() == {"kind": "groups", "group_ids": sorted([GROUPS["alpha"], GROUPS["delta"]])}
        assert "the 2 group(s) marked on the dashboard" in str(composer.query_one("#target-label", Label).render())
        await pilot.press("escape")

        await pilot.press("u", "b")  # nothing marked: every active group, as before
        await wait_until(pilot, lambda: isinstance(app.screen, ComposerScreen))
        composer = app.screen
        assert isinstance(composer, ComposerScreen)
        assert composer.target() == {"kind": "all"}
