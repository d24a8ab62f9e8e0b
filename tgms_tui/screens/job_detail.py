"""A job's payload and full error, with retry / cancel from here too."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.syntax import Syntax
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from tgms_tui.backend import broadcasts, queue
from tgms_tui.backend.dashboard import JobDetail, fetch_job
from tgms_tui.backend.redaction import redact
from tgms_tui.widgets import format as fmt
from tgms_tui.widgets.broadcasts import outcome_text
from tgms_tui.widgets.key_bar import KeyBar

from .actions import is_allowed
from .background import run_in_background
from .confirm import ConfirmScreen

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp


def describe_error(job: JobDetail) -> Text:
    """The job's error as its state, or as history. `last_error` keeps the latest failed try's error
    (or why a try was postponed) after a later try succeeded or while a retry waits: only a failed
    job's error is why it is where it is."""
    if not job.last_error:
        return Text.assemble(("Error: ", "bold"), ("none", "dim"))
    error = fmt.plain(redact(job.last_error), multiline=True)
    if job.status == "failed":
        return Text.assemble(("Error (why it failed): ", "bold"), (error, "red"))
    r = job.retries
    if job.status == "done":
        head = f"Error: none (succeeded on try {job.tries}/{job.max_tries}). History, from an earlier try: "
    elif not r:
        head = "Previous note (a postponed try, not counted): "
    elif job.status == "pending":
        head = f"Previous error (try {r} failed; try {r + 1} waits): "
    elif job.status == "running":
        head = f"Previous error (try {r} failed; try {r + 1} is running): "
    else:
        head = f"Previous error (try {r}, before the job was {job.status}): "
    return Text.assemble((head, "bold"), (error, "dim"))


class JobDetailScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[Any]] = [
        Binding("escape", "back", "Back"),
        Binding("R", "retry_job", "Retry"),
        Binding("x", "cancel_job", "Cancel job"),
    ]

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.job: JobDetail | None = None

    @property
    def tgms(self) -> TGMSApp:
        return cast("TGMSApp", self.app)

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide") as box:
            box.border_title = f"Job {self.job_id}"
            yield Static("loading…", id="job-facts")
            yield Static("", id="job-payload")
            yield Static("", id="job-error")
        yield KeyBar()

    def on_mount(self) -> None:
        self._reload()
        self.tgms.db_changed.subscribe(
            self, lambda table: self._reload() if table in ("jobs", "broadcasts", "*") else None
        )

    def _reload(self) -> None:
        run_in_background(self, self._load, group="load", exclusive=True)

    async def _load(self) -> None:
        job = await self.tgms.attempt(lambda conn: fetch_job(conn, self.job_id), "Loading the job")
        if not self.is_attached:
            return
        if job is None:
            self.query_one("#job-facts", Static).update(Text(f"Job {self.job_id} not found (pruned?)."))
            return
        self.job = job
        facts = Text()
        facts.append(fmt.plain(job.job_type, 80), style="bold")
        facts.append(f"  pool {fmt.plain(job.pool)} · ")
        facts.append_text(fmt.status(job.status))
        facts.append(
            f" · tries {job.tries}/{job.max_tries} (the first run and up to {job.max_retries} retries)"
            f" · priority {job.priority}\n"
        )
        facts.append(
            f"created {fmt.timestamp(job.created_at)} · run at {fmt.timestamp(job.run_at)} · "
            f"updated {fmt.timestamp(job.updated_at)} · finished {fmt.timestamp(job.finished_at)}"
        )
        if job.locked_by:
            facts.append(f"\nworker {fmt.plain(job.locked_by, 200)}")
        if job.dedupe_key:
            facts.append(f"\ndedupe key {fmt.plain(job.dedupe_key, 200)}")
        if job.job_type == broadcasts.SEND_JOB_TYPE:  # done says the sender returned, not how the groups fared
            found = await self.tgms.attempt(lambda conn: broadcasts.for_jobs(conn, [self.job_id]), "Loading")
            b = (found or {}).get(self.job_id)
            if b is not None:
                facts.append(f"\nbroadcast {b.broadcast_id}: ")
                facts.append_text(outcome_text(b))
                facts.append(f" · {b.sent} sent, {b.failed} failed, {b.ambiguous} ambiguous, {b.pending} pending")
                if b.error:
                    facts.append(f"\n{redact(b.error)}", style="red")
        self.query_one("#job-facts", Static).update(facts)
        # The payload quotes Telegram (titles, names, message text): control and bidi characters shown.
        payload = fmt.plain(redact(json.dumps(job.payload, indent=2, ensure_ascii=False, default=str)), multiline=True)
        self.query_one("#job-payload", Static).update(Syntax(payload, "json", word_wrap=True, theme="ansi_dark"))
        self.query_one("#job-error", Static).update(describe_error(job))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return is_allowed(self.app, action)

    def action_back(self) -> None:
        self.dismiss(None)

    def action_retry_job(self) -> None:
        run_in_background(self, self._retry, group="actions")

    def action_cancel_job(self) -> None:
        run_in_background(self, self._cancel, group="actions")

    async def _retry(self) -> None:
        if self.tgms.refuse_if_read_only("retrying a job") or self.job is None:
            return
        ok = await self.tgms.attempt(lambda conn: queue.retry(conn, self.job_id), "Retrying the job")
        if ok is not None:
            self.notify(
                "Job queued again."
                if ok
                else f"Job is {self.job.status}: only failed or cancelled jobs can be retried.",
                severity="information" if ok else "warning",
                timeout=4,
            )
        self._reload()

    async def _cancel(self) -> None:
        if self.tgms.refuse_if_read_only("cancelling a job") or self.job is None:
            return
        if self.job.status not in ("pending", "running"):
            self.notify(f"Job is {self.job.status}: only pending or running jobs can be cancelled.", severity="warning")
            return
        stop = "\n\nIts worker stops it at once." if self.job.status == "running" else ""
        if not await self.app.push_screen_wait(
            ConfirmScreen(f"Cancel job {self.job_id} ({self.job.job_type})?{stop}", yes="Cancel job", no="Keep")
        ):
            return
        ok = await self.tgms.attempt(lambda conn: queue.cancel(conn, self.job_id), "Cancelling the job")
        if ok is not None:
            self.notify(
                "Job cancelled." if ok else "Job already finished.",
                severity="information" if ok else "warning",
                timeout=4,
            )
        self._reload()
