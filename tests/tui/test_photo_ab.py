"""The composer takes a photo file from disk (checked as you type, stored with the broadcast), and a
broadcast's progress screen shows an A/B broadcast's variant table, its verdict, and `W` sends the
winner to the held-back groups."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from textual.widgets import Input, Select, Static, TextArea

from tests import images
from tgms_tui.screens.broadcasts import BroadcastsScreen
from tgms_tui.screens.confirm import ConfirmScreen
from tgms_tui.screens.progress import BroadcastProgressScreen
from tgms_tui.widgets.broadcasts import BroadcastsTable
from tgms_tui.widgets.panes import GroupsTable

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS
from .test_composer import broadcasts, open_composer, problem_text

ALPHA, BETA, GAMMA, DELTA = GROUPS["alpha"], GROUPS["beta"], GROUPS["gamma"], GROUPS["delta"]


def _shows(screen: Any, words: str) -> Callable[[], bool]:
    return lambda: words in problem_text(screen)


async def test_composer_sends_a_photo_file_and_refuses_a_bad_one(seeded_url: str, tmp_path: Path) -> None:
    good = tmp_path / "poster.png"
    good.write_bytes(images.png(1200, 800))
    wide = tmp_path / "banner.png"
    wide.write_bytes(images.png(4200, 200))
    text = tmp_path / "notes.txt"
    text.write_text("not a picture")
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_composer(app, pilot)
        screen.query_one("#kind", Select).value = "photo"
        await pilot.pause()
        screen.query_one("#body", TextArea).text = "From disk"
        for path, words in (
            (wide, "ratio is over 20"),
            (text, "JPEG, PNG or WebP"),
            (tmp_path / "gone.jpg", "cannot read"),
        ):
            screen.query_one("#photo-url", Input).value = str(path)
            await wait_until(pilot, _shows(screen, words), what=f"refusal of {path.name}")
            assert "✗ photo:" in problem_text(screen)
        screen.query_one("#photo-url", Input).value = str(good)
        await wait_until(pilot, lambda: "ready" in problem_text(screen), what="ready")
        assert "image/png, 1200x800" in str(screen.query_one("#preview", Static).render())
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.click("#yes")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastProgressScreen), what="progress")
    (row,) = broadcasts(seeded_url)
    assert row["photo_url"].startswith("tgms-photo:") and row["caption"] == "From disk"
    with psycopg.connect(seeded_url) as conn:
        stored = conn.execute("SELECT content, filename, width, height FROM broadcast_photos").fetchall()
    assert stored == [(good.read_bytes(), "poster.png", 1200, 800)]


AB_SQL = f"""
INSERT INTO broadcasts (broadcast_id, text, target, status, created_by, created_at, started_at, finished_at)
VALUES (201, 'Join today', '{{"kind": "all"}}', 'done', 'api:10.0.0.1', now(), now(), now());
INSERT INTO broadcast_ab (broadcast_id, track_clicks, public_base_url, holdout)
VALUES (201, true, 'https://t.example', 0.5);
INSERT INTO broadcast_variants (broadcast_id, variant, body)
VALUES (201, 1, 'Join today'), (201, 2, 'Last chance: <b>join</b> [now]');
INSERT INTO sent_messages (broadcast_id, chat_id, debug_code, status, variant, telegram_message_id, sent_at)
VALUES (201, {ALPHA}, 'B201G1', 'sent', 1, 1, now()), (201, {BETA}, 'B201G2', 'sent', 2, 2, now());
INSERT INTO broadcast_holdout (broadcast_id, chat_id) VALUES (201, {GAMMA});
UPDATE managed_groups SET member_count = 100 WHERE group_id IN ({ALPHA}, {BETA});
INSERT INTO tracked_links (token, broadcast_id, message_id, variant, url)
SELECT md5(s.chat_id::text), 201, s.message_id, s.variant, 'https://example.org'
  FROM sent_messages s WHERE s.broadcast_id = 201;
INSERT INTO clicks (token, broadcast_id, variant, chat_id)
SELECT l.token, 201, l.variant, s.chat_id
  FROM tracked_links l JOIN sent_messages s USING (message_id),
       generate_series(1, CASE l.variant WHEN 1 THEN 8 ELSE 40 END);
SELECT setval('broadcasts_broadcast_id_seq', 201);
"""


def scalar(url: str, sql: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
        return None if row is None else row[0]


async def test_progress_shows_the_variant_table_and_sends_the_winner(seeded_url: str) -> None:
    with psycopg.connect(seeded_url, autocommit=True) as conn:
        conn.execute("UPDATE managed_groups SET is_active = true WHERE group_id = %s", (GAMMA,))
        conn.execute(AB_SQL)
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.screen.query_one(GroupsTable).row_count == 5)
        await pilot.press("B")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastsScreen), what="broadcasts screen")
        table = app.screen.query_one(BroadcastsTable)
        await wait_until(pilot, lambda: table.row_count == 1, what="the A/B broadcast")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastProgressScreen), what="progress")
        variants = app.screen.query_one("#variants", Static)
        await wait_until(pilot, lambda: "B wins" in str(variants.render()), what="the verdict")
        shown = str(variants.render())
        assert "1 group(s) held back for the winner" in shown
        assert "Last chance: <b>join</b> [now]" in shown  # operator text shown literally
        assert "8.00%" in shown and "40.00%" in shown and "two-proportion z-test" in shown
        await pilot.press("W")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
        await pilot.click("#yes")
        await wait_until(pilot, lambda: scalar(seeded_url, "SELECT count(*) FROM broadcasts") == 2, what="winner")
    assert (
        scalar(seeded_url, "SELECT text FROM broadcasts WHERE broadcast_id <> 201") == "Last chance: <b>join</b> [now]"
    )
    assert scalar(seeded_url, "SELECT winner_of FROM broadcast_ab WHERE broadcast_id <> 201") == 201
    assert scalar(seeded_url, "SELECT target->'group_ids' FROM broadcasts WHERE broadcast_id <> 201") == [GAMMA]
