"""The Bans (B) and Links (L) screens: ban and unban with a confirmation, links listed with figures."""

from __future__ import annotations

import psycopg
from textual.widgets import DataTable, Input

from tgms_tui.screens.bans import BanDialog, BansScreen
from tgms_tui.screens.confirm import ConfirmScreen
from tgms_tui.screens.links import LinksScreen

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS


def sql(url: str, query: str, *params: object) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


async def test_ban_and_unban_from_the_bans_screen(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("K")
        await wait_until(pilot, lambda: isinstance(app.screen, BansScreen), what="bans screen")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, BanDialog), what="ban dialog")
        app.screen.query_one("#ban-user", Input).value = "4242"
        app.screen.query_one("#ban-reason", Input).value = "spam"
        app.screen.query_one("#ban-until", Input).value = "soon"
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, BanDialog)  # a bad `until` is explained, nothing is asked yet
        app.screen.query_one("#ban-until", Input).value = "7d"
        app.screen.query_one("#ban-until", Input).focus()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await wait_until(pilot, lambda: sql(seeded_url, "SELECT count(*) FROM fleet_bans")[0][0] == 1, what="ban")
        ((user, reason, by, until_set, lifted),) = sql(
            seeded_url, "SELECT user_id, reason, banned_by, until IS NOT NULL, lifted_at FROM fleet_bans"
        )
        assert (user, reason, until_set, lifted) == (4242, "spam", True, None) and by.startswith("tui")
        active = sql(seeded_url, "SELECT count(*) FROM managed_groups WHERE is_active")[0][0]
        assert sql(seeded_url, "SELECT count(*) FROM fleet_ban_groups WHERE status = 'pending'")[0][0] == active
        table = app.screen.query_one("#bans-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, what="ban listed")

        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")  # declined: still banned
        await pilot.pause(0.2)
        assert sql(seeded_url, "SELECT lifted_at FROM fleet_bans")[0][0] is None
        await pilot.press("u")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await wait_until(pilot, lambda: sql(seeded_url, "SELECT lifted_by FROM fleet_bans")[0][0] is not None)
        await pilot.press("escape")
        await wait_until(pilot, lambda: not isinstance(app.screen, BansScreen), what="back")


async def test_links_screen_lists_sources_and_read_only_refuses_changes(seeded_url: str) -> None:
    group = GROUPS["alpha"]
    sql(seeded_url, "INSERT INTO invite_links (name, group_id, invite_link, status, created_by) "
                    "VALUES ('ads', %s, 'https://t.me/+abcdefgh12345678', 'active', 'cli')", group)  # fmt: skip
    sql(seeded_url, "INSERT INTO join_requests (user_id, chat_id, status, invite_link) "
                    "VALUES (77, %s, 'approved', 'https://t.me/+abcdefgh...')", group)  # fmt: skip
    app = make_app(seeded_url, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("L")
        await wait_until(pilot, lambda: isinstance(app.screen, LinksScreen), what="links screen")
        table = app.screen.query_one("#links-table", DataTable)
        await wait_until(pilot, lambda: table.row_count == 1, what="source listed")
        row = [str(c) for c in table.get_row_at(0)]
        assert row[0] == "ads" and row[2:4] == ["1", "1"]  # the truncated link counts for the whole one
        await pilot.press("X")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)
        assert sql(seeded_url, "SELECT status FROM invite_links")[0][0] == "active"
