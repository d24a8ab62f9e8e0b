"""The join-request queue screen, the join-policy group action and the dashboard's raid banner."""

from __future__ import annotations

import psycopg
from textual.widgets import DataTable, Static

from tgms_tui.screens.confirm import ConfirmScreen
from tgms_tui.screens.dashboard import DashboardScreen
from tgms_tui.screens.group_detail import GroupDetailScreen
from tgms_tui.screens.join_queue import JoinPolicyScreen, JoinQueueScreen
from tgms_tui.widgets.panes import GroupsTable
from tgms_tui.widgets.raid_banner import RaidBanner

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS


def _sql(url: str, sql: str, *params: object) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


async def test_join_policy_action_sets_the_policy(seeded_url: str) -> None:
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        groups.move_to_key(str(GROUPS["alpha"]))
        await pilot.press("J")
        await wait_until(pilot, lambda: isinstance(app.screen, JoinPolicyScreen), what="policy dialog")
        await pilot.press("down", "down", "enter")
        await wait_until(
            pilot,
            lambda: (
                _sql(seeded_url, "SELECT join_policy FROM managed_groups WHERE group_id = %s", GROUPS["alpha"])
                == [("manual",)]
            ),
            what="policy stored",
        )


async def test_queue_shows_holds_and_queues_decisions(seeded_url: str) -> None:
    alpha, beta = GROUPS["alpha"], GROUPS["beta"]
    _sql(seeded_url, "UPDATE managed_groups SET held_since = now(), held_until = now() + interval '5 minutes', "
                     "title = 'Raided' WHERE group_id = %s", beta)  # fmt: skip
    for user, chat, status in ((901, alpha, "pending"), (902, alpha, "pending"), (903, beta, "held")):
        _sql(seeded_url, "INSERT INTO join_requests (user_id, chat_id, status, requested_at) VALUES (%s, %s, %s, "
                         "now())", user, chat, status)  # fmt: skip
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("Q")
        await wait_until(pilot, lambda: isinstance(app.screen, JoinQueueScreen), what="queue screen")
        screen = app.screen
        assert isinstance(screen, JoinQueueScreen)
        await wait_until(pilot, lambda: len(screen.rows) == 3, what="queue rows")
        banner = str(screen.query_one("#join-banner").render())
        assert "1 group(s) on raid hold: Raided" in banner
        await pilot.press("space", "a")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: _sql(seeded_url, "SELECT payload->>'decision', jsonb_array_length(payload->'ids') FROM jobs "
                                     "WHERE job_type = 'tgms_decide_join_requests'") == [("approve", 1)],
            what="decision queued",
        )  # fmt: skip


def _cell(table: object, key: str, column: str) -> str:
    value = table.get_cell(key, column)  # type: ignore[attr-defined]
    return value.plain if hasattr(value, "plain") else str(value)


async def test_dashboard_banner_and_group_state_show_a_raid_hold_until_released(seeded_url: str) -> None:
    beta = GROUPS["beta"]
    _sql(seeded_url, "UPDATE managed_groups SET held_since = now(), held_until = now() + interval '5 minutes' "
                     "WHERE group_id = %s", beta)  # fmt: skip
    for user in (911, 912, 913):
        _sql(seeded_url, "INSERT INTO join_requests (user_id, chat_id, status, held_at, note, requested_at) "
                         "VALUES (%s, %s, 'held', now(), 'raid hold: group', now())", user, beta)  # fmt: skip
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        banner = app.screen.query_one(RaidBanner)
        groups = app.screen.query_one(GroupsTable)

        def text() -> str:
            return str(banner.render()) if banner.display else ""

        await wait_until(pilot, lambda: "RAID HOLD" in text(), what="raid banner")
        shown = text()
        # Which group (its title literally: brackets are not markup), how many held, and the keys.
        assert "1 group(s) on hold: Beta [VIP] lounge (3 held" in shown, shown
        assert "3 request(s) held" in shown and "Q: join queue" in shown and "H on a group" in shown
        assert banner.has_class("-active")
        await wait_until(pilot, lambda: groups.row_count == 5, what="groups")
        await wait_until(pilot, lambda: _cell(groups, str(beta), "state") == "⏸ HELD", what="held state")
        assert _cell(groups, str(GROUPS["alpha"]), "state") == "ok"

        # The group's detail says so too.
        groups.focus()
        groups.move_to_key(str(beta))
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, GroupDetailScreen), what="group detail")
        facts = app.screen.query_one("#facts", Static)
        await wait_until(pilot, lambda: "RAID HOLD" in str(facts.render()), what="hold in the detail")
        assert "3 held request(s)" in str(facts.render())
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")

        # H releases the group: the banner steps back to a reminder of the held requests.
        groups.move_to_key(str(beta))
        await pilot.press("H")
        await wait_until(pilot, lambda: "No raid hold now; 3 held request(s)" in text(), what="released")
        assert not banner.has_class("-active")
        assert _sql(seeded_url, "SELECT held_until FROM managed_groups WHERE group_id = %s", beta) == [(None,)]
        await wait_until(pilot, lambda: _cell(groups, str(beta), "state") != "⏸ HELD", what="state back")

        # The fleet's hold shows as well; no held request at all hides the banner.
        _sql(seeded_url, "UPDATE join_gate SET fleet_held_since = now(), fleet_held_until = now() + interval '1 hour'")
        await wait_until(pilot, lambda: "FLEET on hold until" in text(), what="fleet hold")
        _sql(seeded_url, "UPDATE join_gate SET fleet_held_until = NULL")
        _sql(seeded_url, "UPDATE join_requests SET status = 'declined' WHERE status = 'held'")
        await wait_until(pilot, lambda: not banner.display, what="banner hidden")


async def test_queue_decides_every_request_of_an_invite_link(seeded_url: str) -> None:
    alpha, beta = GROUPS["alpha"], GROUPS["beta"]
    for group, url in ((alpha, "https://t.me/+alphaADSJUNE0001"), (beta, "https://t.me/+betaADSJUNE00002")):
        _sql(seeded_url, "INSERT INTO invite_links (name, group_id, invite_link, status, created_by) "
                         "VALUES ('ads-june', %s, %s, 'active', 'test')", group, url)  # fmt: skip
    _sql(seeded_url, "INSERT INTO invite_links (name, group_id, invite_link, status, created_by) "
                     "VALUES ('partner', %s, 'https://t.me/+alphaPARTNER0001', 'active', 'test')", alpha)  # fmt: skip
    rows = (
        (921, alpha, "https://t.me/+alphaADSJUNE0001"),
        (922, beta, "https://t.me/+betaADS..."),  # as another administrator bot receives it
        (923, alpha, "https://t.me/+alphaPARTNER0001"),
        (924, alpha, None),
    )
    for user, chat, link in rows:
        _sql(seeded_url, "INSERT INTO join_requests (user_id, chat_id, status, invite_link, requested_at) "
                         "VALUES (%s, %s, 'pending', %s, now() - make_interval(secs => %s))",
             user, chat, link, 100 - user % 10)  # fmt: skip
    ids = dict(_sql(seeded_url, "SELECT user_id, request_id FROM join_requests WHERE user_id BETWEEN 921 AND 924"))
    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("Q")
        await wait_until(pilot, lambda: isinstance(app.screen, JoinQueueScreen), what="queue screen")
        screen = app.screen
        assert isinstance(screen, JoinQueueScreen)
        await wait_until(pilot, lambda: len(screen.rows) == 4, what="queue rows")
        assert [screen.rows[ids[u]].link_name for u in (921, 922, 923, 924)] == ["ads-june", "ads-june", "partner",
                                                                                  None]  # fmt: skip
        table = screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(str(ids[924])))
        await pilot.press("L")  # no link: nothing to decide
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmScreen)
        table.move_cursor(row=table.get_row_index(str(ids[922])))
        await pilot.press("L")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirmation")
        question = str(app.screen.query_one("#question", Static).render())
        assert "'ads-june'" in question and "2 listed here" in question
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: _sql(seeded_url, "SELECT payload->>'decision', payload->'ids' FROM jobs "
                                     "WHERE job_type = 'tgms_decide_join_requests'") == [
                ("decline", sorted([ids[921], ids[922]]))],
            what="decision queued",
        )  # fmt: skip
