"""Hostile text from Telegram and users, seeded into every table the TUI shows, and a walk through
every screen under Pilot asserting that each string is shown literally and the app stays up.

Used by tests/tui/test_hostile_text.py and by the reliability suite's hostile-text scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from textual.app import App
from textual.widgets import Static, TextArea
from textual.widgets._toast import Toast

from tgms_tui.screens.analytics import AnalyticsScreen
from tgms_tui.screens.composer import ComposerScreen
from tgms_tui.screens.confirm import ConfirmScreen
from tgms_tui.screens.group_detail import GroupDetailScreen
from tgms_tui.screens.help import HelpScreen
from tgms_tui.screens.job_detail import JobDetailScreen
from tgms_tui.screens.phase import PhaseScreen
from tgms_tui.widgets import format as fmt
from tgms_tui.widgets.detail_tables import GroupBroadcastsTable, GroupJoinsTable, KicksTable
from tgms_tui.widgets.live_table import strip_text
from tgms_tui.widgets.panes import GroupsTable, JobsTable, JoinRequestsTable, WorkersTable

from .conftest import SIZE, make_app, wait_until

EVIL = -1009000000001  # title: closes a tag that was never opened (MarkupError as markup)
CLICK = -1009000000002  # title: a clickable action as markup
BIDI = -1009000000003  # title: an RTL override that would reverse the rest of the line
ESCAPE = -1009000000004  # title: a terminal escape sequence
LONG = -1009000000005  # title: 500 characters

TITLES = {
    EVIL: "Evil [/] group",
    CLICK: "[@click=app.quit]x[/] club",
    BIDI: "Pay \u202egnp.exe\u202c now",
    ESCAPE: "Red \x1b[31mALERT\x1b[0m \x9b2J",
    LONG: "[bold]" + "L" * 494,
}
ERROR = "[/] boom [@click=app.quit]quit[/] \x1b[2J \u2066iso\u2069"
USERNAME = "[bold]mallory[/]\u202e"

HOSTILE_SQL = """
INSERT INTO managed_groups (group_id, title, phase, is_active, deactivated_reason)
SELECT id, title, 'growth', id <> %(long)s, CASE WHEN id = %(long)s THEN %(error)s END
  FROM unnest(%(ids)s::bigint[], %(titles)s::text[]) AS t(id, title);
INSERT INTO jobs (job_type, payload, status, retries, max_retries, last_error, finished_at)
VALUES ('tgms_process_join_request', %(payload)s, 'failed', 6, 5, %(error)s, now()),
       ('process_telegram_update', '{}', 'done', 2, 5, %(error)s, now());
INSERT INTO bot_health (worker_id, bot_name, status, pid, host, last_error)
VALUES ('tgms_worker@x:1:a', 'tgms_worker', 'running', 1234567, %(host)s, %(error)s);
INSERT INTO join_requests (user_id, chat_id, username, status, error, processed_at)
VALUES (66, %(evil)s, %(username)s, 'failed', %(error)s, now());
INSERT INTO kick_audit (chat_id, user_id, action, reason) VALUES (%(evil)s, 66, 'failed', %(error)s);
WITH b AS (INSERT INTO broadcasts (text, status, error) VALUES (%(title)s, 'stopped', %(error)s)
           RETURNING broadcast_id)
INSERT INTO sent_messages (broadcast_id, chat_id, debug_code, status, error)
SELECT broadcast_id, %(evil)s, 'B1G001', 'failed', %(error)s FROM b;
"""


def seed_hostile(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in filter(str.strip, HOSTILE_SQL.split(";\n")):
            conn.execute(statement, PARAMS)


PARAMS: dict[str, Any] = {
    "ids": list(TITLES),
    "titles": list(TITLES.values()),
    "long": LONG,
    "evil": EVIL,
    "error": ERROR,
    "title": TITLES[EVIL],
    "username": USERNAME,
    "host": "[/]h\u202eost",
    "payload": Jsonb({"title": TITLES[CLICK], "text": TITLES[BIDI]}),
}


def screen_text(app: App[Any]) -> str:
    """What the terminal shows now (the top screen, as the compositor draws it)."""
    return "\n".join(strip_text(strip) for strip in app.screen._compositor.render_strips())


def toasts(app: App[Any]) -> str:
    """The notices on screen, as drawn."""
    return "\n".join(str(toast.render()) for toast in app.screen.query(Toast))


def assert_clean(text: str) -> None:
    """No control or bidi character reached the screen; none of the markup was eaten."""
    bad = [ch for ch in text if (ord(ch) < 32 and ch != "\n") or 0x7F <= ord(ch) < 0xA0 or ch in fmt.BIDI_CONTROLS]
    assert not bad, f"control or bidi characters on screen: {bad!r}"


def assert_shown(app: App[Any], *needles: str) -> None:
    text = screen_text(app)
    assert_clean(text)
    for needle in needles:
        assert needle in text, f"{needle!r} not on screen:\n{text}"


@dataclass
class Walk:
    """What `walk_every_screen` looked at: the screens whose drawing it checked, the strings found there."""

    screens: set[str] = field(default_factory=set)
    strings: int = 0


async def walk_every_screen(db_url: str) -> Walk:
    """Seed the hostile rows, then drive every pane, dialog and detail screen of a live app over them."""
    seed_hostile(db_url)
    app = make_app(db_url)
    walk = Walk()

    def shown(*needles: str) -> None:
        assert_shown(app, *needles)
        walk.screens.add(type(app.screen).__name__)
        walk.strings += len(needles)

    async with app.run_test(size=SIZE, notifications=True) as pilot:
        groups = app.screen.query_one(GroupsTable)
        jobs = app.screen.query_one(JobsTable)
        workers = app.screen.query_one(WorkersTable)
        joins = app.screen.query_one(JoinRequestsTable)
        await wait_until(
            pilot,
            lambda: groups.row_count == 5 and jobs.row_count == 2 and workers.row_count == 1 and joins.row_count == 1,
            what="hostile rows",
        )
        # Tables: the cell is the text itself, made visible.
        assert groups.get_cell(str(EVIL), "title").plain == "Evil [/] group"
        assert groups.get_cell(str(CLICK), "title").plain == "[@click=app.quit]x[/] club"
        assert groups.get_cell(str(BIDI), "title").plain == "Pay <U+202E>gnp.exe<U+202C> now"
        assert groups.get_cell(str(ESCAPE), "title").plain == "Red ␛[31mALERT␛[0m \\x9b2J"
        failed = next(k for k in jobs.shown_keys() if jobs.items[k].status == "failed")
        assert jobs.get_cell(failed, "error").plain.startswith("[/] boom [@click=app.quit]quit[/] ␛[2J")
        user = joins.get_cell(joins.shown_keys()[0], "user").plain
        assert user.startswith("@[bold]")
        await pilot.pause(0.2)
        # The screen: literal text, nothing executable, the long title cut to its column.
        shown("Evil [/] group", "[@click=app.quit]x[/] club", "<U+202E>gnp.exe", "␛[31mALERT")
        shown("[/] boom [@click", "1234567")  # the worker's pid survives a hostile host
        long_row = next(line for line in screen_text(app).splitlines() if "[bold]LLL" in line)
        assert len(long_row) == SIZE[0] and "…" in long_row, "a 500-character title stays in its column"

        # Each pane, focused and filtered by hostile text (the filter is shown in the pane's title).
        for key in ("2", "3", "4", "1"):
            await pilot.press(key)
            await pilot.pause(0.05)
        await pilot.press("slash", *"[/]", "enter")
        await wait_until(
            pilot, lambda: set(groups.shown_keys()) == {str(EVIL), str(CLICK)}, what="filter by markup text"
        )
        shown("filter “[/]”")
        await pilot.press("escape")
        await wait_until(pilot, lambda: groups.row_count == 5)

        # The phase dialog names the group: this crashed the app.
        groups.move_to_key(str(EVIL))
        await pilot.press("P")
        await wait_until(pilot, lambda: isinstance(app.screen, PhaseScreen), what="phase dialog")
        shown("Phase of Evil [/] group")
        await pilot.press("escape")

        # The deactivation question names it too; a notice afterwards.
        groups.move_to_key(str(CLICK))
        await pilot.press("a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        shown("Deactivate group [@click=app.quit]x[/] club")
        await pilot.press("y")
        await wait_until(pilot, lambda: groups.get_cell(str(CLICK), "state").plain == "✗ OFF", what="deactivated")
        await wait_until(pilot, lambda: "Group [@click=app.quit]x[/] club" in toasts(app), what="the notice")
        app.notify("[/] [@click=app.quit]x[/] \x1b[2J \u202e", title="[bold")  # any notice, whatever it quotes
        await wait_until(pilot, lambda: "[/] [@click=app.quit]x[/] ␛[2J <U+202E>" in toasts(app), what="notice")
        assert "[bold" in toasts(app)
        assert_clean(toasts(app))

        # Group detail: facts, join requests, broadcasts, kicks.
        groups.move_to_key(str(EVIL))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, GroupDetailScreen), what="group detail")
        detail = app.screen
        await wait_until(pilot, lambda: detail.query_one(KicksTable).row_count == 1, what="detail rows")
        assert detail.query_one(GroupJoinsTable).row_count == 1
        assert detail.query_one(GroupBroadcastsTable).row_count == 1
        await pilot.pause(0.1)
        detail_joins = detail.query_one(GroupJoinsTable)
        assert detail_joins.get_cell(detail_joins.shown_keys()[0], "user").plain == "@[bold]mallor…"
        shown("Evil [/] group  id", "@[bold]mallor…", "[/] boom [@click=app.quit]")

        # The group's charts: its title in the header, literally.
        await pilot.press("C")
        await wait_until(pilot, lambda: isinstance(app.screen, AnalyticsScreen), what="group charts")
        charts = app.screen
        assert isinstance(charts, AnalyticsScreen)
        await wait_until(pilot, lambda: charts.series is not None, what="group series")
        await pilot.pause(0.1)
        shown("Evil [/] group  id")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, GroupDetailScreen))
        await pilot.press("escape")

        # The long, inactive group's detail: its reason is the hostile error.
        groups.move_to_key(str(LONG))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, GroupDetailScreen))
        await wait_until(pilot, lambda: "INACTIVE ([/] boom" in screen_text(app), what="long group detail")
        assert_clean(screen_text(app))
        await pilot.press("escape")

        # Job detail: payload and error.
        await pilot.press("2")
        jobs.move_to_key(failed)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, JobDetailScreen), what="job detail")
        await wait_until(pilot, lambda: "[@click=app.quit]x[/] club" in screen_text(app), what="payload")
        shown("<U+202E>gnp.exe", "[/] boom [@click=app.quit]quit[/] ␛[2J <U+2066>iso<U+2069>")
        await pilot.press("escape")

        # Composer: hostile message text in the preview and in the confirmation.
        await pilot.press("1")
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposerScreen), what="composer")
        composer = app.screen
        walk.screens.add(type(composer).__name__)
        composer.query_one("#body", TextArea).text = "Hi [/] [@click=app.quit]q[/] \x1b[2J \u202eevil"
        preview = composer.query_one("#preview", Static)
        await wait_until(
            pilot, lambda: "Hi [/] [@click=app.quit]q[/] ␛[2J <U+202E>evil" in str(preview.render()), what="preview"
        )
        assert_clean(str(preview.render()))  # (the text box itself shows what was typed, as Textual draws it)
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="broadcast confirmation")
        question = str(app.screen.query_one("#question", Static).render())  # (the composer shows through)
        assert "Hi [/] [@click=app.quit]q[/] ␛[2J <U+202E>evil" in question
        walk.strings += 2  # the preview and the question
        assert_clean(question)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposerScreen))
        await pilot.press("escape")

        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        walk.screens.add(type(app.screen).__name__)
        await pilot.press("escape")
        assert app.is_running and app.return_code is None, "the app is still up"
        assert isinstance(app.screen.query_one("#status", Static), Static)
    return walk
