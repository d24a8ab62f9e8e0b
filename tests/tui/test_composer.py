"""The broadcast composer validates as the API does and creates exactly what the API creates."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row
from textual.widgets import Input, Select, Static, TextArea

from tgms_tui.backend.broadcasts import create_broadcast
from tgms_tui.backend.db import open_pool
from tgms_tui.backend.message_validation import validate_broadcast
from tgms_tui.screens.composer import ComposerScreen, estimate_seconds, parse_send_time
from tgms_tui.screens.confirm import ConfirmScreen
from tgms_tui.screens.progress import BroadcastProgressScreen
from tgms_tui.widgets.deliveries import DeliveriesTable
from tgms_tui.widgets.panes import GroupsTable

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS


def broadcasts(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT b.broadcast_id, b.text, b.photo_url, b.caption, b.parse_mode, b.target, b.is_final, "
            "b.send_at, b.status, b.created_by, j.job_type, j.payload, j.status AS job_status, j.run_at, "
            "j.priority, j.max_retries, j.dedupe_key "
            "FROM broadcasts b LEFT JOIN jobs j ON j.job_id = b.job_id ORDER BY b.broadcast_id"
        ).fetchall()


def problem_text(screen: ComposerScreen) -> str:
    return str(screen.query_one("#problems", Static).render())


async def open_composer(app: Any, pilot: Any) -> ComposerScreen:
    groups = app.screen.query_one(GroupsTable)
    await wait_until(pilot, lambda: groups.row_count == 5)
    await pilot.press("b")
    await wait_until(pilot, lambda: isinstance(app.screen, ComposerScreen), what="composer")
    screen = app.screen
    assert isinstance(screen, ComposerScreen)
    return screen


async def test_composer_rejects_long_caption_and_bad_url(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_composer(app, pilot)
        screen.query_one("#kind", Select).value = "photo"
        await pilot.pause()
        screen.query_one("#photo-url", Input).value = "https://example.com/cat.jpg"
        screen.query_one("#body", TextArea).text = "x" * 1100
        await wait_until(pilot, lambda: "caption" in problem_text(screen), what="caption error")
        assert "too long (1100 characters after parsing, limit 1024)" in problem_text(screen)
        assert "1,100 / 1,024" in str(screen.query_one("#counter", Static).render())

        screen.query_one("#body", TextArea).text = "a fine caption"
        await wait_until(pilot, lambda: "ready" in problem_text(screen), what="valid again")

        for bad in ("not a url", "ftp://example.com/x.jpg", "https://"):
            screen.query_one("#photo-url", Input).value = bad
            await wait_until(pilot, lambda: "photo_url" in problem_text(screen), what=f"url error for {bad!r}")
            assert "wrong HTTP URL" in problem_text(screen)

        # Markdown Telegram would reject is caught too, with Telegram's words.
        screen.query_one("#photo-url", Input).value = "https://example.com/cat.jpg"
        screen.query_one("#parse-mode", Select).value = "MarkdownV2"
        screen.query_one("#body", TextArea).text = "Sale ends soon!"
        await wait_until(pilot, lambda: "can't parse entities" in problem_text(screen), what="markdown error")
        assert "reserved" in problem_text(screen)

        await pilot.press("ctrl+s")  # refused: nothing to confirm, nothing stored
        await pilot.pause(0.3)
        assert not isinstance(app.screen, ConfirmScreen)
    assert broadcasts(seeded_url) == []


async def test_confirmed_broadcast_matches_the_admin_api(seeded_url: str) -> None:
    body = {
        "photo_url": "https://example.com/sale.jpg",
        "caption": "*Big* sale\\!",
        "parse_mode": "MarkdownV2",
        "target": {"kind": "phase", "phase": "growth"},
        "final": False,
        "send_at": "2099-01-01T09:00:00+00:00",
    }
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_composer(app, pilot)
        screen.query_one("#kind", Select).value = "photo"
        screen.query_one("#parse-mode", Select).value = "MarkdownV2"
        screen.query_one("#target", Select).value = "phase"
        screen.query_one("#phase", Select).value = "growth"
        await pilot.pause()
        screen.query_one("#photo-url", Input).focus()
        await pilot.press(*"https://example.com/sale.jpg")
        screen.query_one("#body", TextArea).text = "*Big* sale\\!"
        screen.query_one("#send-at", Input).value = "2099-01-01T09:00:00+00:00"
        await wait_until(pilot, lambda: "ready" in problem_text(screen), what="valid broadcast")
        assert screen.body() == body

        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        question = app.screen.question  # type: ignore[attr-defined]
        assert "2 groups" in question  # Alpha and Delta: active, phase growth (Gamma is inactive)
        assert "≈ 3s" in question  # (2 - 1) groups x 3 s between groups
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastProgressScreen), what="progress")
        progress = app.screen
        deliveries = progress.query_one(DeliveriesTable)
        await wait_until(pilot, lambda: deliveries.row_count == 2, what="per-group rows")
        assert set(deliveries.items) == {str(GROUPS["alpha"]), str(GROUPS["delta"])}
        assert {d.status for d in deliveries.items.values()} == {"queued"}

    # The same body through the admin API's code path, on the same database.
    pool = await open_pool(seeded_url)
    try:
        async with pool.connection() as conn:
            await create_broadcast(conn, validate_broadcast(body), created_by="api:test")
    finally:
        await pool.close()
    tui, api = broadcasts(seeded_url)
    assert tui["created_by"].startswith("tui:") and api["created_by"] == "api:test"
    assert tui["payload"] == {"broadcast_id": tui["broadcast_id"]}
    assert api["payload"] == {"broadcast_id": api["broadcast_id"]}
    ignore = {"broadcast_id", "created_by", "payload"}
    assert {k: v for k, v in tui.items() if k not in ignore} == {k: v for k, v in api.items() if k not in ignore}
    assert tui["job_type"] == "tgms_send_to_groups" and tui["run_at"] == tui["send_at"]


async def test_paid_broadcast_shows_its_cost_before_confirming(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_composer(app, pilot)
        screen.query_one("#target", Select).value = "phase"
        screen.query_one("#phase", Select).value = "growth"
        screen.query_one("#body", TextArea).text = "Flash sale"
        await wait_until(pilot, lambda: "ready" in problem_text(screen), what="valid broadcast")
        estimate = screen.query_one("#estimate", Static)
        await wait_until(pilot, lambda: "2 groups" in str(estimate.render()), what="target count")
        assert "Stars" not in str(estimate.render())
        screen.query_one("#paid", Select).value = "yes"
        await wait_until(pilot, lambda: "up to 0.2 Telegram Stars" in str(estimate.render()), what="cost shown")
        assert screen.body()["paid"] is True

        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        question = app.screen.question  # type: ignore[attr-defined]
        assert "Cost: up to 0.2 Telegram Stars (2 messages × 0.1 Star" in question
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, BroadcastProgressScreen), what="progress")
    with psycopg.connect(seeded_url) as conn:
        assert conn.execute("SELECT paid, text FROM broadcasts").fetchall() == [(True, "Flash sale")]


async def test_marked_groups_become_the_target(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        for name in ("delta", "alpha"):
            groups.move_to_key(str(GROUPS[name]))
            await pilot.press("space")
        assert groups.get_cell(str(GROUPS["alpha"]), "mark").plain == "●"
        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, ComposerScreen))
        screen = app.screen
        assert isinstance(screen, ComposerScreen)
        screen.query_one("#target", Select).value = "groups"
        await pilot.press(*"hello")
        await wait_until(pilot, lambda: screen.request is not None, what="valid")
        assert screen.request is not None
        assert screen.request.target == {"kind": "groups", "group_ids": sorted([GROUPS["alpha"], GROUPS["delta"]])}
        await wait_until(pilot, lambda: screen.target_count == 2, what="target count")
        await pilot.press("escape")
        assert app.screen.query_one(GroupsTable) is groups


def test_send_time_and_estimate() -> None:
    from datetime import datetime, timedelta

    from tgms_tui.backend.config import Settings

    now = datetime(2026, 5, 1, 17, 30).astimezone()
    assert parse_send_time("", now) is None and parse_send_time("now", now) is None
    assert datetime.fromisoformat(parse_send_time("+30m", now) or "") == now + timedelta(minutes=30)
    assert datetime.fromisoformat(parse_send_time("18:00", now) or "").hour == 18
    assert datetime.fromisoformat(parse_send_time("09:00", now) or "").day == 2  # already past today
    assert parse_send_time("2026-05-03T10:00:00+00:00", now) == "2026-05-03T10:00:00+00:00"
    for bad in ("tomorrow", "25:00", "+5x"):
        try:
            parse_send_time(bad, now)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
    settings = Settings(rate_per_second=5.0, group_delay_seconds=3.0)
    assert estimate_seconds(0, settings) == 0
    assert estimate_seconds(1, settings) == 0
    assert estimate_seconds(101, settings) == 300
    fast = Settings(rate_per_second=2.0, group_delay_seconds=0.0)
    assert estimate_seconds(11, fast) == 5.0  # the bot rate is the limit when there is no pause
    paid = Settings(rate_per_second=5.0, group_delay_seconds=3.0, paid_rate_per_second=1000.0)
    assert estimate_seconds(10_001, paid, paid=True) == 10.0  # no delay between groups, the paid rate
