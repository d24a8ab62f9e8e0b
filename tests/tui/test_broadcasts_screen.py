"""Broadcasts in the control center: the composer blocks what the sender would refuse, `B` lists every
broadcast with its outcome, Enter reopens its progress, a scheduled one is edited or cancelled, and the
jobs pane never shows `✓ done` for a broadcast that sent nothing."""

from __future__ import annotations

from typing import Any

import psycopg
from textual.widgets import Input, Select, Static, TextArea

from tgms_tui.screens.broadcast_edit import BroadcastEditScreen
from tgms_tui.screens.broadcasts import BroadcastsScreen
from tgms_tui.screens.composer import ComposerScreen
from tgms_tui.screens.confirm import ConfirmScreen
from tgms_tui.screens.dashboard import DashboardScreen
from tgms_tui.screens.job_detail import JobDetailScreen
from tgms_tui.screens.progress import BroadcastProgressScreen
from tgms_tui.widgets.broadcasts import BroadcastsTable
from tgms_tui.widgets.deliveries import DeliveriesTable
from tgms_tui.widgets.panes import GroupsTable, JobsTable

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS

ALPHA, BETA, DELTA = GROUPS["alpha"], GROUPS["beta"], GROUPS["delta"]

# Three broadcasts as the sender leaves them: one stopped before sending (content error), one done
# with a failure, one scheduled far ahead.
BROADCASTS_SQL = f"""
INSERT INTO broadcasts (broadcast_id, text, target, status, error, created_by, created_at, started_at, finished_at)
VALUES (101, 'stopped one', '{{"kind": "all"}}', 'stopped',
        'content error before sending: text: message is too long with the debug code appended', 'api:10.0.0.1',
        now() - interval '2 hours', now() - interval '2 hours', now() - interval '2 hours'),
       (102, 'partly failed', '{{"kind": "all"}}', 'done', NULL, 'cli:ops', now() - interval '1 hour',
        now() - interval '1 hour', now() - interval '59 minutes');
INSERT INTO broadcasts (broadcast_id, text, target, status, created_by, send_at)
VALUES (103, 'see you tomorrow', '{{"kind": "phase", "phase": "growth"}}', 'pending', 'tui:ann',
        '2099-01-01T09:00:00+00');
INSERT INTO sent_messages (broadcast_id, chat_id, debug_code, status, telegram_message_id, error, sent_at)
VALUES (102, {ALPHA}, 'B102G1', 'sent', 11, NULL, now() - interval '1 hour'),
       (102, {BETA}, 'B102G2', 'sent', 12, NULL, now() - interval '1 hour'),
       (102, {DELTA}, 'B102G3', 'failed', NULL, 'Forbidden: bot was kicked', NULL);
INSERT INTO jobs (job_id, job_type, payload, status, finished_at, updated_at)
VALUES (9101, 'tgms_send_to_groups', '{{"broadcast_id": 101}}', 'done', now(), now()),
       (9102, 'tgms_send_to_groups', '{{"broadcast_id": 102}}', 'done', now(), now());
INSERT INTO jobs (job_id, job_type, payload, status, run_at)
VALUES (9103, 'tgms_send_to_groups', '{{"broadcast_id": 103}}', 'pending', '2099-01-01T09:00:00+00');
UPDATE broadcasts SET job_id = 9100 + broadcast_id - 100 WHERE broadcast_id IN (101, 102, 103);
SELECT setval('broadcasts_broadcast_id_seq', 103);
"""


def add_broadcasts(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(BROADCASTS_SQL)


def one(url: str, sql: str, *params: object) -> tuple[Any, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql, params).fetchone()
    assert row is not None
    return tuple(row)


def problem_text(screen: Any) -> str:
    return str(screen.query_one("#problems", Static).render())


async def test_composer_blocks_a_text_the_debug_code_would_push_over_the_limit(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposerScreen), what="composer")
        screen = app.screen
        assert isinstance(screen, ComposerScreen)
        screen.query_one("#body", TextArea).text = "x" * 4095  # fits Telegram's 4096, not with the code
        await wait_until(pilot, lambda: "debug code" in problem_text(screen), what="debug-code error")
        assert problem_text(screen).startswith("✗ text: message is too long with the debug code appended")
        assert "ready" not in problem_text(screen)
        assert "no room for the debug code" in str(screen.query_one("#counter", Static).render())
        await pilot.press("ctrl+s")  # refused: no confirmation, nothing stored
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmScreen)
        assert one(seeded_url, "SELECT count(*) FROM broadcasts") == (0,)

        screen.query_one("#body", TextArea).text = "x" * 4000  # room for the code: ready
        await wait_until(pilot, lambda: "ready" in problem_text(screen), what="ready again")


async def test_composer_names_inactive_listed_groups_and_blocks(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one(GroupsTable).row_count == 5)
        await app.push_screen(ComposerScreen(marked=[ALPHA, GROUPS["gamma"]]))  # Gamma is inactive
        await wait_until(pilot, lambda: isinstance(app.screen, ComposerScreen), what="composer")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ComposerScreen)
        screen.query_one("#target", Select).value = "groups"
        screen.query_one("#body", TextArea).text = "hello"
        await wait_until(pilot, lambda: "target" in problem_text(screen), what="target error")
        assert str(GROUPS["gamma"]) in problem_text(screen) and "inactive" in problem_text(screen)
        screen.query_one("#final", Select).value = "yes"  # Gamma allows a final message: now fine
        await wait_until(pilot, lambda: "ready" in problem_text(screen), what="final reaches gamma")


async def test_jobs_pane_and_job_detail_show_the_broadcast_outcome(seeded_url: str) -> None:
    add_broadcasts(seeded_url)
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        jobs = app.screen.query_one(JobsTable)
        await wait_until(pilot, lambda: "9102" in jobs.items, what="sender jobs")
        await wait_until(pilot, lambda: jobs.get_cell("9101", "status").plain == "✗ stopped", what="stopped")
        assert jobs.get_cell("9102", "status").plain == "⚠ 1 failed"
        jobs.focus()
        jobs.move_to_key("9101")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen), what="job detail")
        facts = app.screen.query_one("#job-facts", Static)
        await wait_until(pilot, lambda: "broadcast 101" in str(facts.render()), what="broadcast facts")
        assert "✗ stopped" in str(facts.render()) and "too long with the debug code" in str(facts.render())


async def test_broadcasts_screen_lists_reopens_edits_and_cancels(seeded_url: str) -> None:
    add_broadcasts(seeded_url)
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one(GroupsTable).row_count == 5)
        await pilot.press("B")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastsScreen), what="broadcasts screen")
        table = app.screen.query_one(BroadcastsTable)
        await wait_until(pilot, lambda: table.row_count == 3, what="three broadcasts")
        assert table.shown_keys() == ["103", "102", "101"]  # newest first
        cell = table.get_cell
        assert (cell("101", "status").plain, cell("102", "status").plain) == ("✗ stopped", "⚠ 1 failed")
        assert cell("103", "status").plain == "◷ scheduled"
        assert (cell("102", "sent").plain, cell("102", "failed").plain, cell("102", "by").plain) == (
            "2",
            "1",
            "cli:ops",
        )
        assert cell("103", "target").plain == "phase growth"

        # Enter reopens the progress of a finished broadcast; escape comes back here.
        table.move_to_key("102")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastProgressScreen), what="progress")
        deliveries = app.screen.query_one(DeliveriesTable)
        await wait_until(pilot, lambda: deliveries.row_count == 3, what="deliveries")
        assert deliveries.get_cell(str(DELTA), "code").plain == "B102G3"
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastsScreen), what="back to the list")

        # A finished broadcast that reached no group has nothing to edit (one with copies gets a
        # follow-up edit: test_broadcast_followups_tui.py); the scheduled one can, through the same checks.
        table.move_to_key("101")
        await pilot.press("e")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, BroadcastEditScreen)
        table.move_to_key("103")
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastEditScreen), what="edit screen")
        edit = app.screen
        assert isinstance(edit, BroadcastEditScreen)
        problems = edit.query_one("#edit-problems", Static)
        edit.query_one("#edit-body", TextArea).text = "y" * 4090
        await wait_until(pilot, lambda: "debug code" in str(problems.render()), what="too long with the code")
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert one(seeded_url, "SELECT text FROM broadcasts WHERE broadcast_id = 103") == ("see you tomorrow",)
        edit.query_one("#edit-body", TextArea).text = "see you on Monday"
        edit.query_one("#edit-send-at", Input).value = "2099-01-04T09:00:00+00:00"
        await wait_until(pilot, lambda: "saves" in str(problems.render()), what="valid edit")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastsScreen), what="saved")
        text, send_at, run_at = one(
            seeded_url,
            "SELECT b.text, b.send_at::text, j.run_at::text FROM broadcasts b JOIN jobs j USING (job_id) "
            "WHERE b.broadcast_id = 103",
        )
        assert (text, send_at, run_at) == ("see you on Monday", "2099-01-04 09:00:00+00", "2099-01-04 09:00:00+00")

        # x cancels it (after a yes): the broadcast and its job.
        table.move_to_key("103")
        await pilot.press("x")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        assert "nothing will be sent" in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: one(seeded_url, "SELECT status FROM broadcasts WHERE broadcast_id = 103") == ("cancelled",),
            what="cancelled",
        )
        assert one(seeded_url, "SELECT status FROM jobs WHERE job_id = 9103") == ("cancelled",)
        assert one(seeded_url, "SELECT starts_with(cancelled_by, 'tui:') FROM broadcasts WHERE broadcast_id = 103") == (
            True,
        )
        await wait_until(pilot, lambda: table.get_cell("103", "status").plain == "– cancelled", what="row updated")
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)


async def test_read_only_broadcasts_screen_refuses_edit_and_cancel(seeded_url: str) -> None:
    add_broadcasts(seeded_url)
    app = make_app(seeded_url, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one(GroupsTable).row_count == 5)
        await pilot.press("B")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastsScreen), what="broadcasts screen")
        table = app.screen.query_one(BroadcastsTable)
        await wait_until(pilot, lambda: table.row_count == 3)
        table.move_to_key("103")
        await pilot.press("x", "e")
        await pilot.pause(0.3)
        assert isinstance(app.screen, BroadcastsScreen)
        messages = [str(n.message) for n in app._notifications]
        assert "Read-only mode: cancelling a broadcast is disabled." in messages
        assert "Read-only mode: editing a broadcast is disabled." in messages
    assert one(seeded_url, "SELECT status, text FROM broadcasts WHERE broadcast_id = 103") == (
        "pending",
        "see you tomorrow",
    )
