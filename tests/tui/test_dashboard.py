"""The dashboard shows the seeded system and keeps itself current without a key press."""

from __future__ import annotations

import time

import psycopg

from tgms_tui.screens.dashboard import DashboardScreen
from tgms_tui.widgets.panes import GroupsTable, JobsTable, JoinRequestsTable, PoolStatsView, WorkersTable

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS


def cell_text(table: object, key: str, column: str) -> str:
    value = table.get_cell(key, column)  # type: ignore[attr-defined]
    return value.plain if hasattr(value, "plain") else str(value)


async def test_panes_show_seeded_data(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5, what="groups")
        jobs = app.screen.query_one(JobsTable)
        workers = app.screen.query_one(WorkersTable)
        joins = app.screen.query_one(JoinRequestsTable)
        await wait_until(pilot, lambda: jobs.row_count == 4 and workers.row_count == 2 and joins.row_count == 3)

        alpha, beta, gamma = (str(GROUPS[n]) for n in ("alpha", "beta", "gamma"))
        assert cell_text(groups, alpha, "title") == "Alpha growers"
        assert cell_text(groups, alpha, "members").strip() == "1,234"
        assert cell_text(groups, alpha, "trend") == "▲+134"  # 1100 -> 1234, kept by migration 005
        # Inactive and failing groups are marked with words/glyphs, not only colour.
        assert cell_text(groups, gamma, "state") == "✗ OFF"
        assert cell_text(groups, beta, "state") == "! FAIL×2"
        assert cell_text(groups, beta, "title") == "Beta [VIP] lounge"  # brackets are not markup
        assert "1 inactive" in str(groups.border_title) and "1 failing" in str(groups.border_title)

        statuses = {cell_text(jobs, k, "status") for k in jobs.shown_keys()}
        assert statuses == {"… pending", "▶ running", "✗ FAILED", "✓ done"}
        failed_key = next(k for k in jobs.shown_keys() if cell_text(jobs, k, "status") == "✗ FAILED")
        assert "bot was kicked" in cell_text(jobs, failed_key, "error")
        # Six tries of six: the first run and its five retries (max_retries 5), as the queue counts them.
        assert cell_text(jobs, failed_key, "retries") == "6/6"

        by_pool = {s.pool: s for s in app.screen.query_one(PoolStatsView).stats}
        assert (by_pool["tgms"].pending, by_pool["tgms"].running, by_pool["tgms"].failed) == (1, 1, 1)
        assert by_pool["main"].done_last_minute == 1 and by_pool["tgms"].lag_seconds is not None
        # The stale main worker (heartbeat 2 min ago) reads STALE; the fresh one does not.
        states = {k.split("@")[0]: cell_text(workers, k, "status") for k in workers.shown_keys()}
        assert states["main_worker"] == "✗ STALE"
        assert states["tgms_worker"] == "● running"

        outcomes = sorted(cell_text(joins, k, "outcome") for k in joins.shown_keys())
        assert outcomes[0].startswith("– inactive") and any(o.startswith("✗ FAILED") for o in outcomes)


async def test_row_inserted_elsewhere_appears_without_key_press(seeded_url: str) -> None:
    # A long fallback period proves the NOTIFY path, not the 2 s poll, brought the row.
    app = make_app(seeded_url, refresh_period=60.0)
    async with app.run_test(size=SIZE) as pilot:
        joins = app.screen.query_one(JoinRequestsTable)
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: joins.row_count == 3 and groups.row_count == 5)
        started = time.monotonic()
        with psycopg.connect(seeded_url, autocommit=True) as conn:
            row = conn.execute(
                "INSERT INTO join_requests (user_id, chat_id, username, status, processed_at) "
                "VALUES (77, %s, 'zed', 'approved', now()) RETURNING request_id",
                (GROUPS["delta"],),
            ).fetchone()
            conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (-1009, 'Zeta new')")
        assert row is not None
        await wait_until(
            pilot,
            lambda: str(row[0]) in joins.items and groups.row_count == 6,
            timeout=5.0,
            what="rows from another connection",
        )
        assert time.monotonic() - started < 5.0
        assert cell_text(groups, "-1009", "title") == "Zeta new"


async def test_cursor_sort_and_filter_survive_refreshes(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        delta = str(GROUPS["delta"])
        assert groups.move_to_key(delta)
        await pilot.press("s")  # title -> phase
        assert groups.sort_column == "phase"
        await pilot.press("S")
        assert groups.sort_reverse
        order_before = groups.shown_keys()
        assert groups.cursor_key == delta

        # Another process changes the row under the cursor and adds one that sorts first.
        with psycopg.connect(seeded_url, autocommit=True) as conn:
            conn.execute("UPDATE managed_groups SET member_count = 4300 WHERE group_id = %s", (GROUPS["delta"],))
            conn.execute("INSERT INTO managed_groups (group_id, title, phase) VALUES (-1010, 'Aaa', 'monitoring')")
        await wait_until(pilot, lambda: groups.row_count == 6, what="new group")
        await wait_until(pilot, lambda: cell_text(groups, delta, "members").strip() == "4,300")
        assert groups.cursor_key == delta, "the cursor follows its row, not its index"
        assert groups.sort_column == "phase" and groups.sort_reverse
        phases = [groups.items[k].phase for k in groups.shown_keys()]
        assert phases == sorted(phases, reverse=True)
        assert [k for k in groups.shown_keys() if k != "-1010"] == order_before

        # Filter: only matching rows; survives a refresh and new non-matching rows.
        await pilot.press("slash", *"delta", "enter")
        assert groups.shown_keys() == [delta]
        with psycopg.connect(seeded_url, autocommit=True) as conn:
            conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (-1011, 'Other')")
            conn.execute("UPDATE managed_groups SET title = 'Delta news!' WHERE group_id = %s", (GROUPS["delta"],))
        await wait_until(pilot, lambda: "-1011" in groups.items, what="unfiltered model update")
        await wait_until(pilot, lambda: cell_text(groups, delta, "title") == "Delta news!")
        assert groups.shown_keys() == [delta]
        assert "filter “delta”" in str(groups.border_title)
        await pilot.press("escape")
        assert groups.row_count == 7


async def test_pause_holds_updates_until_resumed(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        await pilot.press("p")
        screen = app.screen
        assert isinstance(screen, DashboardScreen) and screen.paused
        with psycopg.connect(seeded_url, autocommit=True) as conn:
            conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (-1012, 'Paused?')")
        await pilot.pause(0.6)
        assert groups.row_count == 5, "paused: the table must not change"
        await pilot.press("p")
        await wait_until(pilot, lambda: groups.row_count == 6, what="resume")
