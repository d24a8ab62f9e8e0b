"""The analytics screen in a Pilot run: C opens it from the dashboard with the fleet's charts, the window
switches by key, g shows the dashboard cursor's group (its title literally), read-only shows it too."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from textual_plotext import PlotextPlot

from tgms_tui.screens.analytics import AnalyticsScreen, tick_labels
from tgms_tui.screens.dashboard import DashboardScreen

from ..tui.conftest import SIZE, make_app, wait_until

HOSTILE = "[b]Bold[/b] \u202eevil\u202c <i>"
GROUPS = {-300_001: (HOSTILE, 40), -300_002: ("Quiet", 10)}


def seed_recent(url: str) -> None:
    """Two groups with a day of readings, decisions and deliveries around the database's now."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        for gid, (title, count) in GROUPS.items():
            cur.execute(
                "INSERT INTO managed_groups (group_id, title, member_count) VALUES (%s, %s, %s)", (gid, title, count)
            )
            cur.execute(
                "INSERT INTO member_count_history (group_id, member_count, recorded_at)"
                " SELECT %s, %s - n, now() - make_interval(hours => n) FROM generate_series(0, 30) AS n",
                (gid, count),
            )
        cur.execute(
            "INSERT INTO join_requests (chat_id, user_id, status, requested_at, processed_at)"
            " SELECT -300001, n, CASE WHEN n % 3 = 0 THEN 'declined' ELSE 'approved' END,"
            " now() - make_interval(hours => n), now() - make_interval(hours => n) FROM generate_series(1, 9) AS n"
        )
        cur.execute(
            "INSERT INTO sent_messages (chat_id, debug_code, status, sent_at, updated_at)"
            " VALUES (-300002, 'dbg-a', 'sent', now() - interval '2 hours', now() - interval '2 hours'),"
            " (-300002, 'dbg-b', 'failed', NULL, now() - interval '3 hours')"
        )


def chart_text(screen: Any, name: str) -> str:
    return str(screen.query_one(f"#chart-{name}", PlotextPlot).render())


def test_tick_labels_fit_and_end_on_the_last_bucket() -> None:
    starts = [datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=i) for i in range(30)]
    positions, labels = tick_labels(starts, daily=True)
    assert positions[0] == 0 and positions[-1] == 29 and len(positions) <= 6
    assert labels[0] == "01-01" and labels[-1] == "01-30"


async def test_charts_open_switch_window_and_group(db_url: str) -> None:
    seed_recent(db_url)
    app = make_app(db_url)
    async with app.run_test(size=SIZE) as pilot:
        dashboard = app.screen
        assert isinstance(dashboard, DashboardScreen)
        await wait_until(pilot, lambda: dashboard.groups.cursor_item is not None, what="groups listed")
        cursor = dashboard.groups.cursor_item
        assert cursor is not None
        await pilot.press("C")
        await wait_until(pilot, lambda: isinstance(app.screen, AnalyticsScreen), what="analytics screen")
        screen = app.screen
        assert isinstance(screen, AnalyticsScreen)
        await wait_until(pilot, lambda: screen.series is not None, what="fleet series")
        assert screen.series is not None and screen.series.group_id is None
        assert screen.series.window.name == "7d" and screen.series.members[-1] == 50  # 40 + 10
        assert sum(screen.series.joins_approved) == 6 and sum(screen.series.joins_declined) == 3
        assert "Member count" in chart_text(screen, "members")
        assert "Join requests per 6 hours" in chart_text(screen, "joins")
        many = replace(screen.series, members=[1291], joins_approved=[1013], joins_declined=[2000], joins_other=[3000],
                       deliveries_sent=[12345], deliveries_failed=[1001], active_members=[4567])  # fmt: skip
        head = str(screen.header(many, None))  # every count in the header with the thousands separator
        for figure in ("members 1,291", "joins 1,013 approved", "2,000 declined", "3,000 other",
                       "deliveries 12,345", "1,001 failed", "active 4,567"):  # fmt: skip
            assert figure in head, (figure, head)

        await pilot.press("1")
        await wait_until(pilot, lambda: screen.series is not None and screen.series.window.name == "24h", what="24h")
        assert len(screen.series.starts) == 24
        assert "Join requests per hour" in chart_text(screen, "joins")
        await pilot.press("w")
        await wait_until(pilot, lambda: screen.series is not None and screen.series.window.name == "7d", what="7d")
        await pilot.press("3")
        await wait_until(pilot, lambda: screen.series is not None and screen.series.window.name == "30d", what="30d")
        assert len(screen.series.starts) == 30

        await pilot.press("g")
        await wait_until(
            pilot, lambda: screen.series is not None and screen.series.group_id == cursor.group_id, what="group"
        )
        head = str(screen.query_one("#analytics-head").render())
        title, count = GROUPS[cursor.group_id]
        assert screen.series.members[-1] == count
        assert title.replace("\u202e", "").replace("\u202c", "")[:10] in head and "\u202e" not in head
        await pilot.press("g")
        await wait_until(pilot, lambda: screen.series is not None and screen.series.group_id is None, what="fleet")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen), what="back")


async def test_read_only_shows_the_charts(db_url: str) -> None:
    seed_recent(db_url)
    app = make_app(db_url, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("C")
        await wait_until(pilot, lambda: isinstance(app.screen, AnalyticsScreen), what="analytics screen")
        screen = app.screen
        assert isinstance(screen, AnalyticsScreen)
        await wait_until(pilot, lambda: screen.series is not None, what="series")
        assert screen.series is not None
        assert sum(screen.series.deliveries_sent) == 1 and sum(screen.series.deliveries_failed) == 1
