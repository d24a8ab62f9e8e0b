"""`+` in the groups pane adds a group by id: a dialog, a confirmation, a job for the TGMS worker (the
control center makes no Bot API calls), and a notification with the job's outcome."""

from __future__ import annotations

from typing import Any

import psycopg

from tgms_tui.screens.add_group import AddGroupScreen
from tgms_tui.screens.confirm import ConfirmScreen
from tgms_tui.widgets.panes import GroupsTable

from .conftest import SIZE, make_app, wait_until

NEW_GROUP = -1005550001111


def registration_job(url: str) -> tuple[Any, ...] | None:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT job_id, payload, status FROM jobs WHERE job_type = 'tgms_register_group'"
        ).fetchone()


def finish(url: str, job_id: int, status: str, error: str | None = None) -> None:
    """What the TGMS worker does (tests/workers/test_register_group_e2e.py runs the real one)."""
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE jobs SET status = %s, last_error = %s WHERE job_id = %s", (status, error, job_id))


def messages(app: Any) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_add_group_queues_the_check_and_shows_its_outcome(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        groups.focus()
        await pilot.press("plus")
        await wait_until(pilot, lambda: isinstance(app.screen, AddGroupScreen), what="the id dialog")
        await pilot.press("escape")  # back: nothing queued
        await wait_until(pilot, lambda: not isinstance(app.screen, AddGroupScreen))
        assert registration_job(seeded_url) is None

        await pilot.press("plus")
        await wait_until(pilot, lambda: isinstance(app.screen, AddGroupScreen))
        await pilot.press(*str(NEW_GROUP), "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await wait_until(pilot, lambda: registration_job(seeded_url) is not None, what="the job")
        job = registration_job(seeded_url)
        assert job is not None and job[1] == {"group_id": NEW_GROUP} and job[2] == "pending"

        reason = f"group {NEW_GROUP} not registered: the bot is not an administrator of the group (status member)"
        finish(seeded_url, job[0], "failed", reason)
        await wait_until(pilot, lambda: any(reason in m for m in messages(app)), timeout=10, what="the refusal shown")

        # Accepted: the worker registered it.
        with psycopg.connect(seeded_url) as conn:
            conn.execute("DELETE FROM jobs WHERE job_id = %s", (job[0],))
        await pilot.press("plus")
        await wait_until(pilot, lambda: isinstance(app.screen, AddGroupScreen))
        await pilot.press(*str(NEW_GROUP), "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: registration_job(seeded_url) is not None, what="the second job")
        second = registration_job(seeded_url)
        assert second is not None
        finish(seeded_url, second[0], "done")
        await wait_until(
            pilot, lambda: f"Group {NEW_GROUP} added." in messages(app), timeout=10, what="the success shown"
        )


async def test_read_only_cannot_add_a_group(seeded_url: str) -> None:
    app = make_app(seeded_url, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        groups.focus()
        await pilot.press("plus")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, AddGroupScreen)
        assert registration_job(seeded_url) is None
