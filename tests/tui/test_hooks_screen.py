"""The event-webhooks screen (W): subscriptions with their state, the delivery log, replay, test and
pause/resume — and never a secret; hostile text (a receiver's error) shown literally."""

from __future__ import annotations

import asyncio

import psycopg
from textual.widgets import DataTable, Input, Static

from tgms_tui.backend import hooks
from tgms_tui.screens.hooks import HooksScreen, ReplayRangeDialog
from tgms_tui.widgets.status_bar import StatusBar

from .conftest import SIZE, make_app, wait_until


def sql(url: str, query: str, *params: object) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def subscribe(url: str) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            made = await hooks.add(conn, "http://127.0.0.1:9/in", ["group.deactivated"], "t", allow_private=True)
            await conn.commit()
            return made

    return asyncio.run(go())


def rendered(table: DataTable) -> str:
    return "\n".join(" ".join(str(c) for c in table.get_row_at(i)) for i in range(table.row_count))


async def test_hooks_screen_lists_replays_tests_and_pauses(seeded_url: str) -> None:
    sub_id, secret = await asyncio.to_thread(subscribe, seeded_url)
    group = sql(seeded_url, "SELECT group_id FROM managed_groups WHERE is_active LIMIT 1")[0][0]
    sql(seeded_url, "UPDATE managed_groups SET is_active = false, deactivated_reason = 'x' WHERE group_id = %s", group)
    sql(seeded_url, "UPDATE hook_deliveries SET status = 'failed', attempts = 3, last_status_code = 500,"
                    " last_latency_ms = 12.5, last_error = '[bold]boom[/bold] \u202e'")  # fmt: skip
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("W")
        await wait_until(pilot, lambda: isinstance(app.screen, HooksScreen), what="hooks screen")
        subs = app.screen.query_one("#hooks-subs", DataTable)
        log = app.screen.query_one("#hooks-log", DataTable)
        await wait_until(pilot, lambda: subs.row_count == 1 and log.row_count == 1, what="rows")
        assert "db ok" in str(app.screen.query_one(StatusBar).render())  # the app's chrome, as on every screen
        assert "active" in rendered(subs)
        row = rendered(log)
        assert "group.deactivated" in row and "failed" in row and "500" in row and "12.5 ms" in row
        assert "[bold]boom[/bold]" in row  # literal, not markup
        screen_text = " ".join(str(w.render()) for w in app.screen.query(Static)) + rendered(subs) + row
        assert secret not in screen_text

        log.focus()
        await pilot.press("r")
        await wait_until(pilot, lambda: sql(seeded_url, "SELECT count(*) FROM hook_deliveries")[0][0] == 2,
                         what="replayed")  # fmt: skip
        replayed = sql(seeded_url, "SELECT replay_of, status FROM hook_deliveries ORDER BY delivery_id DESC LIMIT 1")
        assert replayed[0][1] == "pending" and replayed[0][0] is not None
        await pilot.press("R")
        await wait_until(pilot, lambda: isinstance(app.screen, ReplayRangeDialog), what="range dialog")
        app.screen.query_one("#replay-since", Input).value = "soon"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ReplayRangeDialog)  # explained, nothing queued
        app.screen.query_one("#replay-since", Input).value = "1h"
        await pilot.press("enter")
        await wait_until(pilot, lambda: sql(seeded_url, "SELECT count(*) FROM hook_deliveries")[0][0] == 3,
                         what="range replayed")  # fmt: skip
        await wait_until(pilot, lambda: isinstance(app.screen, HooksScreen), what="back on the screen")
        await pilot.press("t")
        await wait_until(pilot, lambda: sql(seeded_url, "SELECT count(*) FROM hook_events WHERE event_type ="
                                                        " 'hook.test'")[0][0] == 1, what="test queued")  # fmt: skip
        await pilot.press("p")
        await wait_until(pilot, lambda: sql(seeded_url, "SELECT status FROM hook_subscriptions")[0][0] == "paused",
                         what="paused")  # fmt: skip
        await wait_until(pilot, lambda: "paused" in rendered(subs), what="paused shown")
        await pilot.press("p")
        await wait_until(pilot, lambda: sql(seeded_url, "SELECT status FROM hook_subscriptions")[0][0] == "active",
                         what="resumed")  # fmt: skip
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, HooksScreen), what="back")
    assert sub_id


async def test_read_only_refuses_hook_actions(seeded_url: str) -> None:
    await asyncio.to_thread(subscribe, seeded_url)
    app = make_app(seeded_url, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("W")
        await wait_until(pilot, lambda: isinstance(app.screen, HooksScreen), what="hooks screen")
        assert "READ-ONLY" in str(app.screen.query_one(StatusBar).render())
        await pilot.press("t", "p", "R")
        await pilot.pause(0.3)
    assert sql(seeded_url, "SELECT count(*) FROM hook_events")[0][0] == 0
    assert sql(seeded_url, "SELECT status FROM hook_subscriptions")[0][0] == "active"
