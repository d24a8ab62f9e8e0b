"""Group and job actions change the database (with a confirmation where it matters)."""

from __future__ import annotations

from typing import Any

import psycopg

from tgms_tui.backend import groups as group_store
from tgms_tui.screens.confirm import ConfirmScreen
from tgms_tui.screens.group_detail import GroupDetailScreen
from tgms_tui.screens.job_detail import JobDetailScreen
from tgms_tui.screens.phase import PhaseScreen
from tgms_tui.widgets.detail_tables import GroupJoinsTable, KicksTable
from tgms_tui.widgets.panes import GroupsTable, JobsTable

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS, job_id


def fetch(url: str, sql: str, *params: object) -> tuple:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


def group_row(url: str, group: str) -> tuple:
    return fetch(
        url,
        "SELECT is_active, phase, final_message_allowed, consecutive_failures, deactivated_reason "
        "FROM managed_groups WHERE group_id = %s",
        GROUPS[group],
    )


async def test_toggle_active_asks_before_deactivating(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        groups.move_to_key(str(GROUPS["alpha"]))
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("n")  # declined: nothing changes
        await pilot.pause(0.2)
        assert group_row(seeded_url, "alpha")[0] is True

        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: group_row(seeded_url, "alpha")[0] is False, what="deactivation")
        assert group_row(seeded_url, "alpha")[4] == "deactivated by an operator"
        await wait_until(pilot, lambda: str(groups.get_cell(str(GROUPS["alpha"]), "state")) == "✗ OFF")

        # Activating asks the TGMS worker to check the bot's rights with Telegram first (the check
        # `tgms groups set --active yes` makes); the worker reactivates the group when they hold, and
        # the failure count starts afresh (Gamma had 3).
        groups.move_to_key(str(GROUPS["gamma"]))
        await pilot.press("a")
        job = await _reactivation_job(pilot, seeded_url, GROUPS["gamma"])
        assert not isinstance(app.screen, ConfirmScreen)
        async with await psycopg.AsyncConnection.connect(seeded_url, autocommit=True) as conn:
            await group_store.reactivate(conn, GROUPS["gamma"])  # what the worker does after the check
            await conn.execute("UPDATE jobs SET status = 'done' WHERE job_id = %s", (job,))
        await wait_until(pilot, lambda: "activated." in " ".join(_notes(app)), what="activation reported")
        assert group_row(seeded_url, "gamma")[0] is True and group_row(seeded_url, "gamma")[3] == 0

        # The check fails: the reason is shown, and the operator may reactivate anyway (like --force).
        reason = f"group {GROUPS['alpha']} not reactivated: the bot is not an administrator of the group"
        for answer, active in (("n", False), ("y", True)):
            groups.move_to_key(str(GROUPS["alpha"]))
            await pilot.press("a")
            job = await _reactivation_job(pilot, seeded_url, GROUPS["alpha"])
            with psycopg.connect(seeded_url, autocommit=True) as conn:
                conn.execute("UPDATE jobs SET status = 'failed', last_error = %s WHERE job_id = %s", (reason, job))
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="reactivate anyway?")
            assert reason in str(app.screen.query_one("#question").render())
            await pilot.press(answer)
            await wait_until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            await pilot.pause(0.3)
            assert group_row(seeded_url, "alpha")[0] is active
            with psycopg.connect(seeded_url, autocommit=True) as conn:
                conn.execute("DELETE FROM jobs WHERE job_id = %s", (job,))


def _notes(app: Any) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def _reactivation_job(pilot: Any, url: str, group_id: int) -> int:
    query = ("SELECT job_id FROM jobs WHERE job_type = 'tgms_register_group' AND payload = %s::jsonb "
             "AND status = 'pending'")  # fmt: skip
    payload = f'{{"group_id": {group_id}, "reactivate": true}}'
    found: list[int] = []

    def queued() -> bool:
        with psycopg.connect(url) as conn:
            found[:] = [r[0] for r in conn.execute(query, (payload,)).fetchall()]
        return len(found) == 1

    await wait_until(pilot, queued, what="the rights check queued")
    return found[0]


async def test_phase_final_and_member_refresh(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        groups.move_to_key(str(GROUPS["delta"]))
        await pilot.press("P")
        await wait_until(pilot, lambda: isinstance(app.screen, PhaseScreen))
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: group_row(seeded_url, "delta")[1] == "monitoring", what="phase")

        await pilot.press("f")
        await wait_until(pilot, lambda: group_row(seeded_url, "delta")[2] is True, what="final allowed")

        await pilot.press("r")
        await wait_until(
            pilot,
            lambda: (
                fetch(
                    seeded_url,
                    "SELECT count(*) FROM jobs WHERE job_type = 'tgms_update_member_counts' AND payload = %s::jsonb",
                    f'{{"group_ids": [{GROUPS["delta"]}]}}',
                )[0]
                == 1
            ),
            what="member count job",
        )


async def test_group_detail_shows_history_joins_and_kicks(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        groups.move_to_key(str(GROUPS["alpha"]))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, GroupDetailScreen))
        screen = app.screen
        assert isinstance(screen, GroupDetailScreen)
        await wait_until(pilot, lambda: screen.detail is not None, what="detail")
        assert screen.detail is not None
        assert [p.member_count for p in screen.detail.history] == [1000 + n * 25 for n in range(10)]
        assert screen.query_one(GroupJoinsTable).row_count == 1
        assert screen.query_one(KicksTable).row_count == 1
        # A kick recorded elsewhere shows up live.
        with psycopg.connect(seeded_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO kick_audit (chat_id, user_id, action) VALUES (%s, 5, 'kicked')", (GROUPS["alpha"],)
            )
        await wait_until(pilot, lambda: screen.query_one(KicksTable).row_count == 2, what="live kick")
        await pilot.press("escape")
        assert app.screen.query_one(GroupsTable) is groups


async def test_job_retry_cancel_and_detail(seeded_url: str) -> None:
    failed = job_id(seeded_url, "tgms_process_join_request")
    pending = job_id(seeded_url, "tgms_update_member_counts")
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        jobs = app.screen.query_one(JobsTable)
        await wait_until(pilot, lambda: jobs.row_count == 4)
        await pilot.press("2")
        assert app.focused is jobs

        jobs.move_to_key(str(failed))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen))
        detail = app.screen
        assert isinstance(detail, JobDetailScreen)
        await wait_until(pilot, lambda: detail.job is not None)
        assert detail.job is not None and detail.job.payload == {"chat_id": GROUPS["beta"], "user_id": 42}
        assert "bot was kicked" in str(detail.query_one("#job-error").render())
        await pilot.press("escape")

        await pilot.press("R")
        await wait_until(
            pilot,
            lambda: fetch(seeded_url, "SELECT status, retries FROM jobs WHERE job_id = %s", failed) == ("pending", 0),
            what="retry",
        )

        jobs.move_to_key(str(pending))
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: fetch(seeded_url, "SELECT status FROM jobs WHERE job_id = %s", pending) == ("cancelled",),
            what="cancel",
        )


async def test_command_palette_offers_and_runs_pane_actions(seeded_url: str) -> None:
    from textual.command import CommandPalette

    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        groups.move_to_key(str(GROUPS["alpha"]))
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
        await pilot.press(*"deactivate")
        await pilot.pause(0.5)  # the palette searches in the background
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the action's confirmation")
        assert "Alpha growers" in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("y")
        await wait_until(pilot, lambda: group_row(seeded_url, "alpha")[0] is False, what="deactivation")
