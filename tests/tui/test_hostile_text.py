"""Text from Telegram and users is shown literally, on every screen: never markup, never a terminal
control sequence, never reordered by bidi marks, never a broken layout.

Any admin of a managed group can set its title, any user picks a username, and errors quote both. As
Rich/Textual markup a title `Evil [/] group` ends the app (MarkupError) and `[@click=app.quit]x[/]`
becomes a clickable action; an ESC sequence would reach the terminal; an RTL override would reorder what
the operator reads. The app must stay up and show each of them as the characters they are.
"""

from __future__ import annotations

import psycopg

from tgms_tui.screens.bans import BansScreen
from tgms_tui.screens.dashboard import DashboardScreen
from tgms_tui.screens.join_queue import JoinQueueScreen
from tgms_tui.screens.links import LinksScreen
from tgms_tui.widgets import format as fmt

from .conftest import SIZE, make_app, wait_until
from .hostile import BIDI, ERROR, TITLES, USERNAME, assert_shown, screen_text, walk_every_screen


def test_plain_makes_hostile_text_visible_and_inert() -> None:
    assert fmt.plain("Evil [/] group") == "Evil [/] group"
    assert fmt.plain("a\x1b[31mb\x9bc") == "a␛[31mb\\x9bc"
    assert fmt.plain("x\u202ey\u2066z\u2069") == "x<U+202E>y<U+2066>z<U+2069>"
    assert fmt.plain("one\ntwo\u2028three\tfour") == "one two three four"
    assert fmt.plain("one\ntwo", multiline=True) == "one\ntwo"
    assert fmt.plain("x" * 500, 20) == "x" * 19 + "…"
    cell = fmt.text("[@click=app.quit]x[/]")
    assert cell.plain == "[@click=app.quit]x[/]" and not cell.spans


async def test_every_screen_shows_hostile_text_literally(db_url: str) -> None:
    walk = await walk_every_screen(db_url)
    assert walk.screens >= {"PhaseScreen", "ConfirmScreen", "GroupDetailScreen", "JobDetailScreen", "AnalyticsScreen"}


QUEUE_SQL = """
INSERT INTO managed_groups (group_id, title, join_policy) VALUES (%(bidi)s, %(bidi_title)s, 'manual');
INSERT INTO join_requests (user_id, chat_id, username, status, requested_at, note)
VALUES (77, %(bidi)s, %(username)s, 'pending', now(), %(error)s);
INSERT INTO fleet_bans (user_id, reason, banned_by) VALUES (77, %(error)s, %(username)s);
INSERT INTO invite_links (name, group_id, created_by, status, error)
VALUES (%(username)s, %(bidi)s, 'cli:x', 'failed', %(error)s);
"""


async def test_queue_bans_and_links_show_hostile_text_literally(db_url: str) -> None:
    """The join-request queue (Q), the ban list (K) and the invite links (L) render the same text."""
    params = {"bidi": BIDI, "bidi_title": TITLES[BIDI], "username": USERNAME, "error": ERROR}
    with psycopg.connect(db_url, autocommit=True) as conn:
        for statement in filter(str.strip, QUEUE_SQL.split(";\n")):
            conn.execute(statement, params)
    app = make_app(db_url)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        for key, screen in (("Q", JoinQueueScreen), ("K", BansScreen), ("L", LinksScreen)):
            await pilot.press(key)
            await wait_until(pilot, lambda: isinstance(app.screen, screen), what=screen.__name__)  # noqa: B023
            # Each shows the user's name with its markup and bidi mark made visible, never applied.
            await wait_until(pilot, lambda: "[bold]mallory[/]<U+202E>" in screen_text(app), what="the username")
            assert_shown(app, "[bold]mallory[/]<U+202E>")
            if key != "L":
                assert_shown(app, "[/] boom [@click=app.quit]quit[/]")
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), what="back")
        assert app.is_running and app.return_code is None
