"""A broadcast's progress, live: counts by outcome and one row per group with its debug code; for an
A/B broadcast its variant table and verdict too, and `W` sends the winner to the held-back groups;
below, once there are any, its follow-ups (edit, retract, pin, unpin) in each group, shown the same way."""

from __future__ import annotations

import getpass
from typing import TYPE_CHECKING, Any, ClassVar, cast

from psycopg import AsyncConnection
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import ProgressBar, Static

from tgms_tui.backend import broadcast_variants, followups
from tgms_tui.backend.broadcasts import BroadcastNotFound, BroadcastStateError, broadcast_progress
from tgms_tui.backend.dashboard import fetch_deliveries
from tgms_tui.backend.live import ALL_TABLES, RefreshScheduler
from tgms_tui.backend.message_validation import ValidationError
from tgms_tui.errors import DatabaseUnavailable
from tgms_tui.widgets import format as fmt
from tgms_tui.widgets.deliveries import DeliveriesTable
from tgms_tui.widgets.followups import FollowupsTable, rows_of
from tgms_tui.widgets.key_bar import KeyBar
from tgms_tui.widgets.status_bar import StatusBar
from tgms_tui.widgets.variants import render_report

from .actions import is_allowed
from .confirm import ConfirmScreen

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp

WATCHED = {"broadcasts", "sent_messages", "jobs", "clicks", ALL_TABLES}


async def load_progress(
    conn: AsyncConnection[Any], broadcast_id: int, targeted: list[int]
) -> tuple[Any, Any, list[dict[str, Any]]]:
    return (
        await broadcast_progress(conn, broadcast_id),
        await fetch_deliveries(conn, broadcast_id, targeted),
        await followups.detail(conn, broadcast_id),
    )


class BroadcastProgressScreen(Screen[None]):
    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "back", "Back to dashboard"),
        Binding("W", "send_winner", "Send the winner"),
    ]

    def __init__(self, broadcast_id: int, targeted: list[int] | None = None) -> None:
        super().__init__()
        self.broadcast_id = broadcast_id
        self.targeted = list(targeted or [])
        self.progress: dict[str, Any] | None = None
        self.scheduler: RefreshScheduler | None = None

    @property
    def tgms(self) -> TGMSApp:
        return cast("TGMSApp", self.app)

    def compose(self) -> ComposeResult:
        yield StatusBar(read_only=self.tgms.read_only, id="status")
        yield Static(f"Broadcast {self.broadcast_id}: loading…", id="progress-summary")
        yield ProgressBar(total=max(1, len(self.targeted)), show_eta=False, id="progress-bar")
        yield Static("", id="variants")
        yield DeliveriesTable(id="deliveries")
        yield FollowupsTable(id="followups", classes="hidden")
        yield KeyBar()

    def on_mount(self) -> None:
        # A broadcast to 10,000 groups re-reads 10,000 rows per refresh: twice a second is live enough.
        self.scheduler = RefreshScheduler(
            self._refresh, {"progress"}, min_gap=max(0.5, self.tgms.min_refresh_gap), period=self.tgms.refresh_period
        )
        self.tgms.db_changed.subscribe(self, self._on_change)
        self.tgms.db_state_signal.subscribe(self, self.query_one(StatusBar).set_db)
        self.query_one(StatusBar).set_db(self.tgms.db_state)
        self.run_worker(self.scheduler.run(), group="refresh", exit_on_error=False)
        self.query_one(DeliveriesTable).focus()

    def _on_change(self, table: str) -> None:
        if table in WATCHED and self.scheduler is not None:
            self.scheduler.mark("progress")

    async def _refresh(self, stale: frozenset[str]) -> bool:
        try:
            progress, deliveries, after = await self.tgms.run_db(
                lambda conn: load_progress(conn, self.broadcast_id, self.targeted)
            )
            report = await self.tgms.run_db(lambda conn: broadcast_variants.report(conn, self.broadcast_id))
        except DatabaseUnavailable:
            return False
        except LookupError:
            self.query_one("#progress-summary", Static).update(Text(f"Broadcast {self.broadcast_id} not found."))
            return True
        if not self.is_attached:
            return True
        self.progress = progress
        table = self.query_one(DeliveriesTable)
        table.show(deliveries)
        later = self.query_one(FollowupsTable)
        later.set_class(not after, "hidden")
        later.show(rows_of(after))
        counts = {s: 0 for s in ("queued", "pending", "sending", "sent", "failed", "ambiguous", "skipped")}
        for d in deliveries:
            counts[d.status] = counts.get(d.status, 0) + 1
        total = len(deliveries)
        finished = counts["sent"] + counts["failed"] + counts["ambiguous"] + counts["skipped"]
        summary = Text()
        summary.append(f"Broadcast {self.broadcast_id} · ", style="bold")
        summary.append_text(fmt.status(progress["status"]))
        if progress.get("send_at") and progress["status"] == "pending":
            summary.append(f" · scheduled {fmt.timestamp(progress['send_at'])}")
        summary.append(f" · {total:,} groups: ")
        summary.append(f"✓ sent {counts['sent']:,}", style="green")
        summary.append(" · ")
        summary.append(f"✗ failed {counts['failed']:,}", style="bold red" if counts["failed"] else "")
        summary.append(" · ")
        summary.append(f"… pending {counts['pending'] + counts['queued'] + counts['sending']:,}")
        summary.append(" · ")
        summary.append(f"? ambiguous {counts['ambiguous']:,}", style="bold yellow" if counts["ambiguous"] else "")
        if counts["skipped"]:
            summary.append(f" · – skipped {counts['skipped']:,}")
        if progress.get("error"):
            summary.append(f"\n✗ {fmt.plain(progress['error'], 500)}", style="bold red")
        self.query_one("#progress-summary", Static).update(summary)
        bar = self.query_one(ProgressBar)
        bar.update(total=max(1, total), progress=finished)
        variants = self.query_one("#variants", Static)
        variants.display = report is not None
        if report is not None:
            variants.update(render_report(report))
        return True

    def action_back(self) -> None:
        self.dismiss(None)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return is_allowed(self.app, action)

    def action_send_winner(self) -> None:
        self.run_worker(self._send_winner(), group="winner", exclusive=True, exit_on_error=False)

    async def _send_winner(self) -> None:
        if self.tgms.refuse_if_read_only("sending the winner"):
            return
        question = (
            f"Send broadcast {self.broadcast_id}'s winning variant to the groups it held back?\n\n"
            "It goes out as a new broadcast, once; the statement above says why it won."
        )
        if not await self.app.push_screen_wait(ConfirmScreen(question, yes="Send the winner", no="Keep")):
            return
        who = f"tui:{_user()}"

        async def send(conn: Any) -> tuple[int, int] | str:
            try:
                return await broadcast_variants.send_winner(conn, self.broadcast_id, who)
            except (BroadcastNotFound, BroadcastStateError, ValidationError) as exc:
                return str(exc)

        result = await self.tgms.attempt(send, "Sending the winner")
        if isinstance(result, str):
            self.notify(result, severity="warning", timeout=6)
        elif result is not None:
            self.notify(f"Winner enqueued as broadcast {result[0]} for {result[1]:,} group(s).", timeout=5)
        if self.scheduler is not None:
            self.scheduler.mark("progress")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "operator"
