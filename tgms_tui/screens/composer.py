"""`b`: compose a broadcast, validated as you type, confirmed, then sent exactly as the admin API does.

The composer builds the same JSON body `POST /api/tgms/send` takes and runs it through the same
`validate_broadcast` and `create_broadcast` (backend), so a broadcast from the TUI and one from the API
are indistinguishable apart from `created_by`. As you type it also runs the submit checks that need
the database (`broadcasts.check_targets`, and `debug_code.refusal` with the longest code the broadcast
can get, for the id it will most likely get): whatever the sender would refuse is a blocking ✗ here,
and `create_broadcast` checks again with the real id. The only thing added here is presentation:
counters, a preview, the number of groups reached and how long the sending will take.

Inline URL buttons (one row per line, `Text=URL | Text=URL`) are checked by `buttons.validate` and
shown under the preview; ctrl+t sends a test to the test chat (the box, else TGMS_TEST_CHAT_ID)
exactly as the groups will get it (`submission.submit` with `test`), and says how it went.
"""

from __future__ import annotations

import asyncio
import getpass
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Input, Label, Select, Static, TextArea

from tgms_tui.backend import buttons, debug_code, paid_broadcasts, submission, test_sends
from tgms_tui.backend.broadcasts import check_targets, next_id, ordinal_bound
from tgms_tui.backend.config import Settings
from tgms_tui.backend.markup import check_markup, visible_length
from tgms_tui.backend.message_validation import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    BroadcastRequest,
    ValidationError,
    normalise_target,
    validate_broadcast,
)
from tgms_tui.backend.send_time import parse_send_time
from tgms_tui.widgets import format as fmt
from tgms_tui.widgets.key_bar import KeyBar
from tgms_tui.widgets.preview import render_preview
from tgms_tui.widgets.status_bar import StatusBar

from .actions import is_allowed
from .background import run_in_background
from .confirm import ConfirmScreen
from .photo_path import PhotoField, is_url
from .progress import BroadcastProgressScreen

if TYPE_CHECKING:
    from tgms_tui.app import TGMSApp

__all__ = ["ComposerScreen", "describe_estimate", "estimate_seconds", "parse_send_time"]

VALIDATE_DELAY = 0.12
TEST_WAIT_SECONDS = 20.0


def estimate_seconds(groups: int, settings: Settings, paid: bool = False) -> float:
    """How long sending to `groups` groups takes: one group per TGMS_GROUP_DELAY_SECONDS, and never
    faster than TGMS_RATE_PER_SECOND (the shared bot limit); the first message goes at once. A paid
    broadcast goes at TGMS_PAID_RATE_PER_SECOND alone."""
    if groups <= 0:
        return 0.0
    if paid:
        return (groups - 1) / settings.paid_rate_per_second
    interval = max(settings.group_delay_seconds, 1.0 / settings.rate_per_second)
    return (groups - 1) * interval


def describe_estimate(groups: int, settings: Settings, paid: bool = False) -> str:
    plural = "s" if groups != 1 else ""
    took = f"≈ {fmt.duration(estimate_seconds(groups, settings, paid))} for {groups:,} group{plural}"
    if paid:
        return f"{took} (paid: {settings.paid_rate_per_second:g} msg/s)\nCost: {paid_broadcasts.describe_cost(groups)}"
    return f"{took} (one group every {settings.group_delay_seconds:g} s, bot limit {settings.rate_per_second:g} msg/s)"


PARSE_MODE_OPTIONS = [("plain text", "none"), ("Markdown", "Markdown"), ("MarkdownV2", "MarkdownV2"), ("HTML", "HTML")]


class ComposerScreen(Screen[None]):
    """Message, parse mode, target, send time; ctrl+s reviews and (after a yes) sends."""

    BINDINGS: ClassVar[list[Any]] = [
        Binding("ctrl+s", "review", "Review & send"),
        Binding("ctrl+t", "test_send", "Test send"),
        Binding("escape", "cancel", "Cancel"),
    ]
    # The submit checks that need the database: the id the broadcast will most likely get (None until
    # read: nothing is "ready" before) and what the target check said.
    next_id: int | None = None
    target_problem: ValidationError | None = None

    def __init__(self, marked: list[int] | None = None) -> None:
        super().__init__()
        self.marked = list(marked or [])
        self.request: BroadcastRequest | None = None
        self.problem: ValidationError | None = None
        self.target_count: int | None = None
        self._validate_timer: Any = None
        self._count_seq = 0
        self.photo = PhotoField()

    @property
    def tgms(self) -> TGMSApp:
        return cast("TGMSApp", self.app)

    def compose(self) -> ComposeResult:
        marked_label = f"marked groups ({len(self.marked)})"
        # Groups marked on the dashboard (space) are what `b` was pressed for: they are the target.
        target = "groups" if self.marked else "all"
        yield StatusBar(read_only=self.tgms.read_only, id="status")
        with Horizontal(id="composer"):
            with VerticalScroll(id="composer-form") as form:
                form.border_title = "New broadcast"
                with Horizontal(classes="pair"):
                    with Vertical():
                        yield Label("Message", classes="field-label")
                        yield Select(
                            [("text", "text"), ("photo + caption", "photo")], value="text", allow_blank=False, id="kind"
                        )
                    with Vertical():
                        yield Label("Parse mode", classes="field-label")
                        yield Select(PARSE_MODE_OPTIONS, value="none", allow_blank=False, id="parse-mode")
                yield Label(
                    "Photo: http(s) URL, or a file here (JPEG, PNG, WebP; uploaded once)",
                    classes="field-label photo-only",
                )
                yield Input(
                    placeholder="https://example.com/picture.jpg or ~/poster.jpg", id="photo-url", classes="photo-only"
                )
                yield Label("Text", classes="field-label", id="body-label")
                yield TextArea(id="body", soft_wrap=True, tab_behavior="focus")
                yield Static("", id="counter")
                with Horizontal(classes="pair"):
                    with Vertical():
                        yield Label(
                            f"Target: the {len(self.marked)} group(s) marked on the dashboard"
                            if self.marked
                            else "Target",
                            classes="field-label",
                            id="target-label",
                        )
                        yield Select(
                            [("all active groups", "all"), ("one phase", "phase"), (marked_label, "groups")],
                            value=target,
                            allow_blank=False,
                            id="target",
                        )
                    with Vertical(id="phase-box"):
                        yield Label("Phase", classes="field-label")
                        yield Select(
                            [("growth", "growth"), ("monitoring", "monitoring")],
                            value="growth",
                            allow_blank=False,
                            id="phase",
                        )
                yield Label("Final message? (also inactive groups allowing one)", classes="field-label")
                yield Select(
                    [("no: a regular broadcast", "no"), ("yes: a final message", "yes")],
                    value="no",
                    allow_blank=False,
                    id="final",
                )
                yield Label("Paid broadcast? (allow_paid_broadcast: faster, costs Stars)", classes="field-label")
                yield Select(
                    [("no: free, at the bot limit", "no"), ("yes: up to 1000 msg/s, 0.1 Star per message", "yes")],
                    value="no",
                    allow_blank=False,
                    id="paid",
                )
                yield Label("Send at (local): now, +30m, 18:00, 2026-05-01 09:00", classes="field-label")
                yield Input(placeholder="now", id="send-at")
                yield Label("Buttons (optional): one row per line, Text=URL | Text=URL", classes="field-label")
                yield TextArea(id="buttons", soft_wrap=True, tab_behavior="focus")
                configured = self.tgms.settings.test_chat_id
                yield Label("Test chat for ctrl+t (a chat id)", classes="field-label")
                yield Input(
                    placeholder=f"{configured} (TGMS_TEST_CHAT_ID)"
                    if configured
                    else "set TGMS_TEST_CHAT_ID or type one",
                    id="test-chat",
                )
            with Vertical(id="composer-side"):
                yield Static("", id="problems")
                yield Static("", id="estimate")
                yield Static("", id="preview")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one(StatusBar).set_db(self.tgms.db_state)
        self.tgms.db_state_signal.subscribe(self, self.query_one(StatusBar).set_db)
        self.query_one("#preview", Static).border_title = "Preview"
        self._apply_kind()
        self.query_one("#phase-box").display = False
        self.query_one("#body", TextArea).focus()
        self._validate()
        self._count_targets()
        run_in_background(self, self._load_next_id, group="next-id")

    async def _load_next_id(self) -> None:
        found = await self.tgms.attempt(next_id, "Reading the next broadcast id")
        if found is not None and self.is_attached:
            self.next_id = found
            self._validate()

    # ---------------------------------------------------------------- building the request
    def _value(self, selector: str) -> str:
        value = self.query_one(selector, Select).value
        return "" if value is Select.NULL else str(value)

    @property
    def kind(self) -> str:
        return self._value("#kind")

    @property
    def parse_mode(self) -> str | None:
        mode = self._value("#parse-mode")
        return None if mode in ("", "none") else mode

    @property
    def is_final(self) -> bool:
        return self._value("#final") == "yes"

    @property
    def is_paid(self) -> bool:
        return self._value("#paid") == "yes"

    def target(self) -> dict[str, Any]:
        kind = self._value("#target")
        if kind == "phase":
            return {"kind": "phase", "phase": self._value("#phase")}
        if kind == "groups":
            return {"kind": "groups", "group_ids": self.marked}
        return {"kind": "all"}

    def body(self) -> dict[str, Any]:
        """The admin API's JSON body for what is on screen (ValueError for a bad send time)."""
        text = self.query_one("#body", TextArea).text
        data: dict[str, Any] = {"target": self.target(), "final": self.is_final}
        if self.is_paid:
            data["paid"] = True
        if self.kind == "photo":
            data["photo_url"] = self.photo.photo_url(self.query_one("#photo-url", Input).value)
            data["caption"] = text
        else:
            data["text"] = text
        if self.parse_mode:
            data["parse_mode"] = self.parse_mode
        send_at = parse_send_time(self.query_one("#send-at", Input).value)
        if send_at:
            data["send_at"] = send_at
        return data

    def _submission(self, data: dict[str, Any]) -> submission.Submission:
        """What is on screen through the path the admin API and the CLI take (the photo file with it)."""
        file = self.photo.file if self.kind == "photo" else None
        return submission.prepare(data, self.tgms.settings.public_base_url, file)

    def button_rows(self) -> buttons.Rows | None:
        """The buttons box as rows (ValidationError naming `buttons`)."""
        lines = [line for line in self.query_one("#buttons", TextArea).text.splitlines() if line.strip()]
        return buttons.validate([[buttons.parse_option(part.strip()) for part in line.split("|")] for line in lines])

    # ---------------------------------------------------------------- validation as you type
    @on(TextArea.Changed)
    @on(Input.Changed)
    def _edited(self) -> None:
        self._schedule_validate()

    @on(Select.Changed)
    def _select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "kind":
            self._apply_kind()
        if event.select.id in ("target", "phase"):
            self.query_one("#phase-box").display = self._value("#target") == "phase"
        self._schedule_validate()
        if event.select.id in ("target", "phase", "final"):
            self._count_targets()
        elif event.select.id == "paid":
            self._show_estimate()

    def _apply_kind(self) -> None:
        photo = self.kind == "photo"
        for widget in self.query(".photo-only"):
            widget.display = photo
        self.query_one("#body-label", Label).update("Caption (optional)" if photo else "Text")

    def _schedule_validate(self) -> None:
        if self._validate_timer is not None:
            self._validate_timer.stop()
        self._validate_timer = self.set_timer(VALIDATE_DELAY, self._validate)

    def _validate(self) -> None:
        """Counters, preview and the first problem, exactly as the API and the sender would judge it."""
        text = self.query_one("#body", TextArea).text
        mode = self.parse_mode
        limit = CAPTION_LIMIT if self.kind == "photo" else TEXT_LIMIT
        length = visible_length(text, mode)
        problem = self._problem()
        counter = Text(f"{length:,} / {limit:,} characters", style="bold red" if length > limit else "")
        code = self._longest_code()
        if length > limit:
            counter.append(f"  ✗ {length - limit:,} too many", style="bold red")
        elif problem is not None and "debug code" in problem.message:
            counter.append(f"  ✗ no room for the debug code ({code})", style="bold red")
        else:
            counter.append(f"  (+ debug code such as {code}; as Telegram counts, markup excluded)", style="dim")
        self.query_one("#counter", Static).update(counter)

        problems = self.query_one("#problems", Static)
        self.problem = problem
        if problem is None and (self.next_id is None or self.target_count is None):
            problems.update(Text("… checking against the database", style="bold"))
            problems.remove_class("-ok")
        elif problem is None:
            problems.update(Text("✓ ready: ctrl+s to review and send", style="bold"))
            problems.add_class("-ok")
        else:
            label = "send at" if problem.field == "send_at" else problem.field
            problems.update(Text(f"✗ {label}: {problem.message}"))
            problems.remove_class("-ok")

        preview = self.query_one("#preview", Static)
        markup_error = check_markup(text, mode) if text else None
        if markup_error:
            shown = Text(text + "\n\n")
            shown.append(f"✗ Telegram would reject this: {markup_error}", style="bold red")
        elif self.kind == "photo":
            url = self.query_one("#photo-url", Input).value.strip()
            info = self.photo.info if url and not is_url(url) else None
            about = f"{url} ({info.media_type}, {info.width}x{info.height}, {info.size:,} bytes)" if info else url
            shown = Text(f"[photo] {about or '(no URL or file yet)'}\n", style="dim")
            shown.append_text(render_preview(text, mode))
        else:
            shown = render_preview(text, mode) if text else Text("(empty)", style="dim")
        shown.append(f"\n\n+ debug code, e.g. {code}", style="dim")
        try:
            rows = self.button_rows()
        except ValidationError:
            rows = None
        if rows:
            shown.append("\n\n" + buttons.preview(rows), style="bold")
        preview.update(fmt.made_safe(shown))  # the message's control and bidi characters shown
        self._show_estimate()

    def _longest_code(self) -> str:
        """The longest debug code this broadcast can get, for the id it will most likely get."""
        target = self.request.target if self.request is not None else {"kind": "all"}
        return debug_code.longest(self.next_id or 1, ordinal_bound(target, self.target_count or 0))

    def _problem(self) -> ValidationError | None:
        """The first thing the API (422) or the sender would refuse; sets `request` when the fields pass."""
        self.request = None
        try:
            request = validate_broadcast(self.body())
        except ValidationError as exc:  # also a photo file refused (field `photo`)
            return exc
        except ValueError as exc:  # the send time box
            return ValidationError("send_at", str(exc))
        self.request = request
        try:
            self.button_rows()
        except ValidationError as exc:
            return exc
        if self.target_problem is not None:
            return self.target_problem
        code = self._longest_code()
        return debug_code.refusal(request.text, request.photo_url, request.caption, request.parse_mode, code)

    def _count_targets(self) -> None:
        self.target_count = None  # not "ready" until the new target is checked
        self._count_seq += 1
        run_in_background(self, partial(self._load_target_count, self._count_seq), group="targets")

    async def _load_target_count(self, seq: int) -> None:
        try:
            target = normalise_target(self.target())
        except ValidationError as exc:
            self.target_count = None
            self.query_one("#estimate", Static).update(Text(f"✗ target: {exc.message}", style="bold red"))
            return
        final = self.is_final

        async def check(conn: Any) -> tuple[list[int], ValidationError | None]:
            try:
                return await check_targets(conn, target, final), None
            except ValidationError as exc:  # unknown or inactive listed groups, or none reached
                return [], exc

        found = await self.tgms.attempt(check, "Counting groups")
        if found is not None and self.is_attached and seq == self._count_seq:  # the latest question only
            groups, self.target_problem = found
            self.target_count = len(groups)
            self._validate()

    def _show_estimate(self) -> None:
        if self.target_count is None:
            return
        line = Text(f"→ {self.target_count:,} group{'s' if self.target_count != 1 else ''} now\n", style="bold")
        line.append(describe_estimate(self.target_count, self.tgms.settings, self.is_paid), style="")
        if self.target_problem is not None:
            line.append(f"\n✗ target: {self.target_problem.message}", style="bold red")
        self.query_one("#estimate", Static).update(line)

    # ---------------------------------------------------------------- review, confirm, send
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return is_allowed(self.app, action)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_review(self) -> None:
        run_in_background(self, self._review_and_send, group="send", exclusive=True)

    async def _review_and_send(self) -> None:
        if self.tgms.refuse_if_read_only("sending a broadcast"):
            return
        if self._validate_timer is not None:
            self._validate_timer.stop()
        self._validate()
        if self.request is None or self.problem is not None:
            problem = self.problem
            self.notify(
                f"Not sent: {problem.field}: {problem.message}" if problem else "Not sent: still checking.",
                severity="error",
                timeout=6,
            )
            return
        data = self.body()
        req = self.request

        async def check(conn: Any) -> list[int] | ValidationError:
            try:
                return await check_targets(conn, req.target, req.is_final)
            except ValidationError as exc:
                return exc

        groups = await self.tgms.attempt(check, "Counting groups")
        if groups is None:
            return
        if isinstance(groups, ValidationError):
            self._refused(groups)
            return
        if not await self.app.push_screen_wait(
            ConfirmScreen(
                self._summary(req, len(groups)),
                yes=f"Send to {len(groups):,} groups",
                no="Back to editing",
                title="Send this broadcast?",
            )
        ):
            return
        who = f"tui:{_user()}"
        try:
            # checked again: a scheduled time may have passed while confirming
            sub = self._submission({**data, "buttons": self.button_rows()})
            created = await self.tgms.attempt(
                lambda conn: submission.submit(conn, sub, who, None), "Creating the broadcast"
            )
        except ValidationError as exc:  # checked again with the real id: nothing was stored
            self._refused(exc)
            return
        if created is None:
            return
        broadcast_id, count = int(created["broadcast_id"]), int(created["groups"])
        self.notify(f"Broadcast {broadcast_id} enqueued for {count:,} groups.", timeout=5)
        # Not awaited here: switching removes this screen, which waits for this very worker to end.
        self.app.call_later(self.app.switch_screen, BroadcastProgressScreen(broadcast_id, groups))

    def action_test_send(self) -> None:
        run_in_background(self, self._test_send, group="test-send", exclusive=True)

    async def _test_send(self) -> None:
        """Send what is on screen to the test chat only; no group, no broadcast is involved."""
        if self.tgms.refuse_if_read_only("a test send"):
            return
        self._validate()
        if self.request is None or (self.problem is not None and self.problem.field != "target"):
            problem = self.problem
            self.notify(
                f"No test sent: {problem.field}: {problem.message}" if problem else "No test sent: still checking.",
                severity="error",
                timeout=6,
            )
            return
        try:
            chat = test_sends.chat_for(
                self.query_one("#test-chat", Input).value.strip(), self.tgms.settings.test_chat_id
            )
            sub = self._submission({**self.body(), "buttons": self.button_rows(), "test": True, "test_chat_id": chat})
        except ValidationError as exc:
            self.notify(f"No test sent: {exc.field}: {exc.message}", severity="error", timeout=6)
            return
        who = f"tui:{_user()}"
        try:
            answer = await self.tgms.attempt(
                lambda conn: submission.submit(conn, sub, who, None), "Enqueueing the test send"
            )
        except ValidationError as exc:
            self._refused(exc)
            return
        if answer is None:
            return
        test_send_id = int(answer["test_send_id"])
        self.notify(f"Test send #{test_send_id} to chat {chat} enqueued ({answer['debug_code']}).", timeout=4)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TEST_WAIT_SECONDS
        while loop.time() < deadline:
            await asyncio.sleep(0.5)
            found = await self.tgms.attempt(lambda conn: test_sends.get(conn, test_send_id), "Reading the test send")
            if found is None or found.status == "pending":
                continue
            if found.status == "sent":
                self.notify(f"✓ Test send #{test_send_id} delivered to chat {chat}.", timeout=6)
            else:
                self.notify(
                    f"✗ Test send #{test_send_id} failed: {fmt.plain(found.error or '', 200)}",
                    severity="error",
                    timeout=8,
                )
            return
        self.notify(f"Test send #{test_send_id} is still queued: is a TGMS worker running?", severity="warning")

    def _refused(self, problem: ValidationError) -> None:
        self.problem = problem
        problems = self.query_one("#problems", Static)
        problems.update(Text(f"✗ {problem.field}: {problem.message}"))
        problems.remove_class("-ok")
        self.notify(f"Not sent: {problem.field}: {problem.message}", severity="error", timeout=6)

    def _summary(self, req: BroadcastRequest, groups: int) -> str:
        target = req.target
        if target["kind"] == "phase":
            where = f"active groups in phase {target['phase']}"
        elif target["kind"] == "groups":
            where = f"{len(target['group_ids'])} marked groups"
        else:
            where = "all active groups"
        if req.is_final:
            where += " + inactive groups that allow a final message"
        body = req.text if req.text is not None else (req.caption or "")
        first = body.strip().splitlines()[0][:60] if body.strip() else "(no caption)"
        lines = [
            f"{'Photo ' + self.query_one('#photo-url', Input).value.strip() if req.photo_url else 'Text message'} "
            f"({req.parse_mode or 'plain text'})",
            f"“{first}{'…' if len(body) > 60 else ''}”",
            "",
            f"To: {where}: {groups:,} groups now.",
            f"When: {req.send_at.astimezone().strftime('%Y-%m-%d %H:%M %Z') if req.send_at else 'now'}.",
            f"Takes: {describe_estimate(groups, self.tgms.settings, req.paid)}.",
        ]
        return "\n".join(lines)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "operator"
