"""--read-only hides every mutating action and refuses it even when invoked directly."""

from __future__ import annotations

import io
from typing import Any

import psycopg
from rich.console import Console

from tgms_tui.app import TGMSCommands, palette_actions
from tgms_tui.screens.actions import MUTATING_ACTIONS
from tgms_tui.screens.composer import ComposerScreen
from tgms_tui.screens.confirm import ConfirmScreen
from tgms_tui.screens.dashboard import DashboardScreen
from tgms_tui.widgets.panes import GroupsTable, JobsTable
from tgms_tui.widgets.status_bar import StatusBar

from .conftest import SIZE, make_app, wait_until
from .seed import GROUPS, job_id

SNAPSHOT_SQL = (
    "SELECT (SELECT json_agg(g ORDER BY group_id) FROM managed_groups g)::text, "
    "(SELECT json_agg(j ORDER BY job_id) FROM jobs j)::text, (SELECT count(*) FROM broadcasts)"
)


def snapshot(url: str) -> tuple:
    with psycopg.connect(url) as conn:
        row = conn.execute(SNAPSHOT_SQL).fetchone()
    assert row is not None
    return tuple(row)


def footer_actions(app: object) -> set[str]:
    return {binding.action for _, binding, enabled, _ in app.active_bindings.values() if enabled}  # type: ignore[attr-defined]


async def test_read_only_hides_and_refuses_mutations(seeded_url: str) -> None:
    before = snapshot(seeded_url)
    app = make_app(seeded_url, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        groups = app.screen.query_one(GroupsTable)
        await wait_until(pilot, lambda: groups.row_count == 5)
        assert "READ-ONLY" in str(app.screen.query_one(StatusBar).render())

        # Hidden: no mutating binding is active in the footer, on any pane.
        assert footer_actions(app) & MUTATING_ACTIONS == set()
        assert "mark" in footer_actions(app) and "detail" in footer_actions(app)
        await pilot.press("2")
        assert footer_actions(app) & MUTATING_ACTIONS == set()
        assert "job_detail" in footer_actions(app)
        assert not {spec.action for spec in palette_actions(app)} & MUTATING_ACTIONS

        # Refused: every mutating key on every pane does nothing to the database.
        await pilot.press("1")
        groups.move_to_key(str(GROUPS["alpha"]))
        await pilot.press("a", "P", "f", "r", "b")
        assert not isinstance(app.screen, (ConfirmScreen, ComposerScreen))
        jobs = app.screen.query_one(JobsTable)
        jobs.move_to_key(str(job_id(seeded_url, "tgms_process_join_request")))
        await pilot.press("2", "R", "x")
        await pilot.pause(0.3)
        assert any("Read-only mode: cancel a pending job" in str(n.message) for n in app._notifications)
        # Invoked past the bindings (as a script would), the screens refuse as well.
        screen = app.screen
        assert isinstance(screen, DashboardScreen)
        screen.action_compose()
        groups.action_toggle_active()
        await pilot.pause(0.3)
        assert not isinstance(app.screen, (ConfirmScreen, ComposerScreen))
        messages = [str(n.message) for n in app._notifications]
        assert "Read-only mode: composing a broadcast is disabled." in messages
        # The palette offers no mutation either.
        provider = TGMSCommands(screen, None)
        hits = [hit async for hit in provider.search("deactivate")]
        assert hits == []
    assert snapshot(seeded_url) == before


async def test_help_lists_every_binding(seeded_url: str) -> None:
    """Every key bound anywhere in the app is described in the help/palette table."""
    from textual.binding import Binding

    from tgms_tui.app import TGMSApp
    from tgms_tui.screens import (
        broadcast_edit,
        broadcasts,
        composer,
        confirm,
        dashboard,
        group_detail,
        job_detail,
        phase,
        progress,
    )
    from tgms_tui.screens.actions import ACTIONS
    from tgms_tui.widgets import broadcasts as broadcast_widgets
    from tgms_tui.widgets import detail_tables, live_table, panes

    documented = {spec.action.split("(")[0] for spec in ACTIONS}
    classes: list[Any] = [
        TGMSApp,
        dashboard.DashboardScreen,
        composer.ComposerScreen,
        confirm.ConfirmScreen,
        group_detail.GroupDetailScreen,
        job_detail.JobDetailScreen,
        phase.PhaseScreen,
        progress.BroadcastProgressScreen,
        live_table.LiveTable,
        panes.GroupsTable,
        panes.JobsTable,
        detail_tables.KicksTable,
        broadcasts.BroadcastsScreen,
        broadcast_edit.BroadcastEditScreen,
        broadcast_widgets.BroadcastsTable,
    ]
    undocumented = set()
    for cls in classes:
        for binding in cls.BINDINGS:
            assert isinstance(binding, Binding)
            action = binding.action.split("(")[0]
            if action not in documented and action not in {
                "back",
                "cancel",
                "close",
                "scroll_top",
                "scroll_bottom",
                "cursor_up",
                "page_up",
                "last",
                "reverse_sort",
            }:
                undocumented.add((cls.__name__, binding.key, action))
    assert undocumented == set()

    app = make_app(seeded_url)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        from tgms_tui.screens.help import HelpScreen

        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen))
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        console = Console(width=240, file=io.StringIO(), record=True)  # two columns: wide enough not to wrap
        console.print(help_screen.keys_table)
        text = console.export_text()
        for spec in ACTIONS:
            assert spec.description in text and spec.key in text
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
