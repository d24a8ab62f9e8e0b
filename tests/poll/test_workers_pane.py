"""The TUI's Workers pane shows `tgms poll` processes (their bot_health rows) beside the workers."""

from __future__ import annotations

import psycopg

from tests.tui.conftest import SIZE, make_app, wait_until
from tests.tui.test_dashboard import cell_text
from tgms_tui.widgets.panes import WorkersTable


async def test_pollers_appear_in_the_workers_pane(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO bot_health (worker_id, bot_name, status, pid, host, jobs_done, jobs_failed, last_error) "
            "VALUES "
            "('poller:tgms:box:41', 'poller', 'polling', 41, 'box', 120, 0, NULL), "
            "('poller:tgms:box:42', 'poller', 'standby', 42, 'box', 0, 0, NULL), "
            "('poller:main:box:41', 'poller', 'waiting', 41, 'box', 3, 2, 'getUpdates: HTTP 502, no Bot API answer')"
        )
    app = make_app(db_url)
    async with app.run_test(size=SIZE) as pilot:
        workers = app.screen.query_one(WorkersTable)
        await wait_until(pilot, lambda: workers.row_count == 3, what="poller rows")
        rows = {k: (cell_text(workers, k, "worker"), cell_text(workers, k, "status")) for k in workers.shown_keys()}
        assert rows == {
            "poller:tgms:box:41": ("poll tgms box:41", "● polling"),
            "poller:tgms:box:42": ("poll tgms box:42", "● standby"),
            "poller:main:box:41": ("poll main box:41", "● waiting"),
        }
        assert "HTTP 502" in cell_text(workers, "poller:main:box:41", "error")
