"""PostgreSQL going away and coming back: the app says so, keeps working, and recovers by itself."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import psycopg
import pytest

from tests.pg_control import DedicatedPostgres
from tgms_tui.widgets.panes import GroupsTable
from tgms_tui.widgets.status_bar import StatusBar

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS, seed


@pytest.fixture
def own_server() -> Iterator[DedicatedPostgres]:
    """A PostgreSQL of this test's own, which it may stop and start."""
    with DedicatedPostgres() as pg:
        yield pg


@pytest.mark.slow
async def test_database_restart_does_not_crash_the_app(own_server: DedicatedPostgres) -> None:
    pg = own_server
    url = pg.url
    seed(url)
    app = make_app(url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        status = app.screen.query_one(StatusBar)
        await wait_until(pilot, lambda: groups.row_count == 5 and app.db_state.connected)

        await asyncio.to_thread(pg.stop)
        await wait_until(pilot, lambda: not app.db_state.connected, timeout=10, what="lost connection shown")
        assert "DATABASE UNREACHABLE" in str(status.render())
        assert groups.row_count == 5, "the last data stays on screen"

        # Still usable while the database is down: keys work, an action fails politely.
        await pilot.press("j", "question_mark")
        await pilot.press("escape")
        groups.move_to_key(str(GROUPS["alpha"]))
        await pilot.press("f")
        await wait_until(
            pilot, lambda: any("failed" in str(n.message) for n in app._notifications), what="failure reported"
        )
        await pilot.pause(2.5)  # a few refresh cycles against a dead server
        assert app.is_running

        await asyncio.to_thread(pg.start)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (-1777, 'After restart')")
        await wait_until(pilot, lambda: "-1777" in groups.items, timeout=20, what="recovery")
        assert app.db_state.connected
        assert "DATABASE UNREACHABLE" not in str(status.render())
    assert app.return_code in (None, 0)
