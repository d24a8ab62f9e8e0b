"""The join-request queue screen and the join-policy group action."""

from __future__ import annotations

import psycopg

from tgms_tui.screens.confirm import ConfirmScreen
from tgms_tui.screens.join_queue import JoinPolicyScreen, JoinQueueScreen
from tgms_tui.widgets.panes import GroupsTable

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
