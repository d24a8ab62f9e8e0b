"""Follow-ups in the control center: on the Broadcasts screen `e` edits the copies of a sent broadcast,
`D` retracts, `P` pins (silently or not) and `U` unpins them, each after a confirm that says how many
copies it touches and how many are past Telegram's 48 hours; the progress screen shows each
follow-up's outcome per group, live. The composer checks inline buttons, previews them, and ctrl+t
sends a test to a test chat without creating a broadcast."""

from __future__ import annotations

import psycopg
from textual.widgets import Input, Static, TextArea

from tgms_tui.screens.broadcast_edit import BroadcastEditScreen
from tgms_tui.screens.broadcasts import BroadcastsScreen
from tgms_tui.screens.composer import ComposerScreen
from tgms_tui.screens.confirm import ChoiceScreen, ConfirmScreen
from tgms_tui.screens.progress import BroadcastProgressScreen
from tgms_tui.widgets.broadcasts import BroadcastsTable
from tgms_tui.widgets.followups import FollowupsTable
from tgms_tui.widgets.panes import GroupsTable

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS
from .test_broadcasts_screen import add_broadcasts, one, problem_text

ALPHA, BETA = GROUPS["alpha"], GROUPS["beta"]


def followups(url: str) -> list[tuple[str, bool, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT action, silent, requested_by FROM broadcast_followups WHERE broadcast_id = 102 ORDER BY followup_id"
        ).fetchall()
    return [(str(a), bool(s), str(b)) for a, s, b in rows]


async def test_edit_retract_pin_unpin_a_sent_broadcast(seeded_url: str) -> None:
    add_broadcasts(seeded_url)
    with psycopg.connect(seeded_url, autocommit=True) as conn:  # alpha's copy is past Telegram's 48 hours
        conn.execute(f"UPDATE sent_messages SET sent_at = now() - interval '49 hours' WHERE chat_id = {ALPHA}")
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one(GroupsTable).row_count == 5)
        await pilot.press("B")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastsScreen), what="broadcasts screen")
        table = app.screen.query_one(BroadcastsTable)
        await wait_until(pilot, lambda: table.row_count == 3, what="three broadcasts")
        table.move_to_key("102")

        # D: the confirm counts the copies and the ones too old to delete; n keeps them
        await pilot.press("D")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="retract confirm")
        question = app.screen.question  # type: ignore[attr-defined]
        assert "Retract 2 copies of broadcast 102" in question and "1 of them are older than 48 hours" in question
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastsScreen), what="kept")
        assert followups(seeded_url) == []
        await pilot.press("D")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="retract confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: len(followups(seeded_url)) == 1, what="retract requested")

        # P: silently or with a notification
        await pilot.press("P")
        await wait_until(pilot, lambda: isinstance(app.screen, ChoiceScreen), what="pin choice")
        await pilot.press("s")
        await wait_until(pilot, lambda: len(followups(seeded_url)) == 2, what="pin requested")
        await pilot.press("U")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="unpin confirm")
        await pilot.press("y")
        await wait_until(pilot, lambda: len(followups(seeded_url)) == 3, what="unpin requested")

        # e on a sent broadcast: the copies are edited (no send time), after a confirm
        await pilot.press("e")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastEditScreen), what="edit screen")
        edit = app.screen
        assert isinstance(edit, BroadcastEditScreen) and edit.followup
        assert not edit.query("#edit-send-at")
        problems = edit.query_one("#edit-problems", Static)
        await wait_until(pilot, lambda: "nothing changes" in str(problems.render()), what="unchanged text refused")
        edit.query_one("#edit-body", TextArea).text = "partly failed, now fixed"
        await wait_until(pilot, lambda: "saves" in str(problems.render()), what="valid edit")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="edit confirm")
        assert "Edit the 2 copies of broadcast 102" in app.screen.question  # type: ignore[attr-defined]
        await pilot.press("y")
        await wait_until(pilot, lambda: len(followups(seeded_url)) == 4, what="edit requested")
        actions = followups(seeded_url)
        assert [(a, s) for a, s, _ in actions] == [("retract", False), ("pin", True), ("unpin", False), ("edit", False)]
        assert all(by.startswith("tui:") for _, _, by in actions)
        assert one(seeded_url, "SELECT text FROM broadcasts WHERE broadcast_id = 102") == ("partly failed, now fixed",)

        # Enter: each follow-up's outcome per group, updated live as its job records it
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastsScreen), what="back on the list")
        table.move_to_key("102")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastProgressScreen), what="progress")
        later = app.screen.query_one(FollowupsTable)
        assert not later.display or later.row_count == 0
        with psycopg.connect(seeded_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO broadcast_followup_groups (followup_id, sent_message_id, status, error) "
                "SELECT f.followup_id, s.message_id, CASE s.chat_id WHEN %s THEN 'skipped' ELSE 'done' END, "
                "CASE s.chat_id WHEN %s THEN 'too old to delete' END FROM broadcast_followups f "
                "JOIN sent_messages s USING (broadcast_id) WHERE f.action = 'retract' AND s.status = 'sent'",
                (ALPHA, ALPHA),
            )
        await wait_until(pilot, lambda: later.row_count == 2, timeout=15, what="follow-up rows shown")
        assert later.display
        rows = {key: later.get_cell(key, "status").plain for key in later.shown_keys()}
        assert sorted(rows.values()) == ["– skipped", "✓ done"]


async def test_read_only_refuses_the_followup_keys(seeded_url: str) -> None:
    add_broadcasts(seeded_url)
    app = make_app(seeded_url, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one(GroupsTable).row_count == 5)
        await pilot.press("B")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastsScreen), what="broadcasts screen")
        table = app.screen.query_one(BroadcastsTable)
        await wait_until(pilot, lambda: table.row_count == 3, what="three broadcasts")
        table.move_to_key("102")
        for key in ("D", "P", "U", "e"):
            await pilot.press(key)
            await pilot.pause(0.2)
            assert isinstance(app.screen, BroadcastsScreen), key
        assert followups(seeded_url) == []


async def test_composer_buttons_and_test_send(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one(GroupsTable).row_count == 5)
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposerScreen), what="composer")
        screen = app.screen
        screen.query_one("#body", TextArea).text = "Big news"
        await wait_until(pilot, lambda: "ready" in problem_text(screen), what="ready")
        screen.query_one("#buttons", TextArea).text = "Shop=javascript:alert(1)"
        await wait_until(pilot, lambda: "buttons" in problem_text(screen), what="bad button refused")
        assert "only http://, https:// and tg://" in problem_text(screen)
        screen.query_one("#buttons", TextArea).text = "Shop=https://example.org/shop | Docs=https://example.org/d"
        await wait_until(pilot, lambda: "ready" in problem_text(screen), what="ready with buttons")
        preview = str(screen.query_one("#preview", Static).render())
        assert "[ Shop ] [ Docs ]" in preview

        await pilot.press("ctrl+t")  # no test chat: named, nothing stored
        await pilot.pause(0.3)
        assert one(seeded_url, "SELECT count(*) FROM broadcast_test_sends") == (0,)
        screen.query_one("#test-chat", Input).value = "-100777"
        await pilot.press("ctrl+t")
        await wait_until(
            pilot, lambda: one(seeded_url, "SELECT count(*) FROM broadcast_test_sends") == (1,), what="test send"
        )
        chat, content = one(seeded_url, "SELECT chat_id, content FROM broadcast_test_sends")
        assert chat == -100777 and content["text"] == "Big news"
        assert content["buttons"] == [
            [{"text": "Shop", "url": "https://example.org/shop"}, {"text": "Docs", "url": "https://example.org/d"}]
        ]
        assert one(seeded_url, "SELECT count(*) FROM broadcasts") == (0,)
        assert isinstance(app.screen, ComposerScreen)  # still composing
