"""`tgms broadcast send|list|show|cancel|edit`: broadcasts from the shell, through the same backend code
the admin API and the TUI use (a broadcast sent from here is exactly an API broadcast).

`send` is implied when the first argument is an option, so `tgms broadcast --text ...` keeps working.
Group ids are negative (`-1001234567890`), which argparse reads as options: `prepare_argv` joins
`--groups -1001,-1002` and `--group -1001` to their values before parsing, so what users type works.

Exit status: 0 done, 1 the action does not apply (no such broadcast, already finished), 2 refused
input (the field is named, as the API's 422 names it).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import re
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg

from tgms_tui.backend import broadcast_variants, broadcasts, buttons, followups, paid_broadcasts, submission, test_sends
from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.broadcasts import BroadcastNotFound, BroadcastStateError, BroadcastSummary
from tgms_tui.backend.message_validation import ValidationError
from tgms_tui.backend.send_time import FORMS, parse_send_time

from . import broadcast_ab

ACTIONS = ("send", "list", "show", "cancel", "edit", "send-winner")
TEST_WAIT_SECONDS = 20.0
_ID_LIKE = re.compile(r"^\s*-?\d")  # a value that starts like a chat id; the type then checks the rest


def prepare_argv(argv: Sequence[str]) -> list[str]:
    """`tgms broadcast --text ...` → `tgms broadcast send --text ...`; `--groups -1001,-1002` and
    `--group -1001` → `--groups=-1001,-1002` / `--group=-1001` (argparse would take them for options)."""
    args = list(argv)
    try:
        at = args.index("broadcast")
    except ValueError:
        return args
    rest = args[at + 1 :]
    if rest and rest[0].startswith("-") and rest[0] not in ("-h", "--help"):
        rest.insert(0, "send")
    joined: list[str] = []
    i = 0
    while i < len(rest):
        token = rest[i]
        if token in ("--groups", "--group") and i + 1 < len(rest) and _ID_LIKE.match(rest[i + 1]):
            joined.append(f"{token}={rest[i + 1]}")
            i += 2
            continue
        joined.append(token)
        i += 1
    return args[: at + 1] + joined


def group_ids(value: str) -> list[int]:
    """An argparse type: comma-separated chat ids, e.g. -1001234567890,-1009876543210."""
    try:
        ids = [int(part) for part in value.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integer group ids, got {value!r}") from None
    if not ids:
        raise argparse.ArgumentTypeError("expected at least one group id")
    return ids


def broadcast_id(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a broadcast id (a number), got {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("a broadcast id is a positive number")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "`tgms broadcast --text ...` is `tgms broadcast send --text ...`."
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    send = sub.add_parser("send", help="enqueue a broadcast (the default when the first argument is an option)")
    content = send.add_mutually_exclusive_group()
    content.add_argument("--text", help="message text (1-4096 characters with the debug code)")
    content.add_argument("--photo-url", help="http(s) URL of a photo")
    broadcast_ab.add_send_arguments(send, content)
    send.add_argument("--caption", help="photo caption (up to 1024 characters with the debug code)")
    send.add_argument("--parse-mode", choices=["Markdown", "MarkdownV2", "HTML"])
    target = send.add_mutually_exclusive_group()
    target.add_argument("--phase", choices=["growth", "monitoring"], help="only active groups in this phase")
    target.add_argument(
        "--groups", type=group_ids, help="comma-separated group ids, e.g. --groups -1001234567890,-1009876543210"
    )
    target.add_argument(
        "--group", type=int, action="append", dest="group", metavar="ID", help="a group id (repeat for more)"
    )
    send.add_argument(
        "--final", action="store_true", help="also reach inactive groups whose final_message_allowed is true"
    )
    send.add_argument("--send-at", metavar="WHEN", help=f"schedule it: {FORMS} (local time)")
    send.add_argument(
        "--paid",
        action="store_true",
        help="paid broadcast (Telegram's allow_paid_broadcast): up to 1000 msg/s for 0.1 Telegram Star per message "
        "from the bot's balance; the reply shows the most it can cost",
    )
    send.add_argument("--delete-after", metavar="DURATION", help="retract its copies this long after it goes out (24h)")
    send.add_argument(
        "--button",
        action="append",
        metavar="TEXT=URL",
        help='an inline URL button row (repeat for more rows; "A=URL | B=URL" puts two in one row)',
    )
    send.add_argument(
        "--test",
        action="store_true",
        help="send it only to the test chat (TGMS_TEST_CHAT_ID or --test-chat), as the groups would get it",
    )
    send.add_argument("--test-chat", metavar="CHAT_ID", help="the test chat for --test")
    send.add_argument(
        "--test-wait",
        type=float,
        default=TEST_WAIT_SECONDS,
        metavar="SECONDS",
        help=f"how long --test waits for the outcome (default {TEST_WAIT_SECONDS:g}; 0: not at all)",
    )

    listing = sub.add_parser("list", help="the newest broadcasts with their status and counts")
    listing.add_argument("--limit", type=int, default=broadcasts.LIST_LIMIT, help="how many (default 50)")
    listing.add_argument("--before", type=broadcast_id, metavar="ID", help="only broadcasts older than this id")
    listing.add_argument("--json", action="store_true", help="JSON, as GET /api/tgms/broadcasts answers")

    show = sub.add_parser("show", help="one broadcast and its delivery to each group (debug codes)")
    show.add_argument("broadcast_id", type=broadcast_id, metavar="ID")
    show.add_argument("--json", action="store_true", help="JSON, as GET /api/tgms/broadcasts/ID answers")

    cancel = sub.add_parser("cancel", help="cancel a scheduled broadcast, or stop a running one before its next group")
    cancel.add_argument("broadcast_id", type=broadcast_id, metavar="ID")
    cancel.add_argument("--json", action="store_true")

    edit = sub.add_parser("edit", help="change a broadcast that has not started (text, caption, send time)")
    edit.add_argument("broadcast_id", type=broadcast_id, metavar="ID")
    edit.add_argument("--text")
    edit.add_argument("--caption")
    edit.add_argument("--parse-mode", choices=["Markdown", "MarkdownV2", "HTML", "none"])
    edit.add_argument("--send-at", metavar="WHEN", help=f"{FORMS} (local time)")
    edit.add_argument("--json", action="store_true")

    broadcast_ab.add_actions(sub)
    retract = sub.add_parser("retract", help="delete a sent broadcast's copies (Telegram: within 48 hours)")
    retract.add_argument("broadcast_id", type=broadcast_id, metavar="ID")
    retract.add_argument("--json", action="store_true")
    pin = sub.add_parser("pin", help="pin a sent broadcast's copies (where the bot may pin)")
    pin.add_argument("broadcast_id", type=broadcast_id, metavar="ID")
    pin.add_argument("--silent", action="store_true", help="without a notification to the members")
    pin.add_argument("--json", action="store_true")
    unpin = sub.add_parser("unpin", help="unpin a sent broadcast's copies")
    unpin.add_argument("broadcast_id", type=broadcast_id, metavar="ID")
    unpin.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "send":
            return _send(args)
        return _other(args)
    except ValidationError as exc:
        return _refused(exc.field, exc.message)


def _refused(field: str, message: str) -> int:
    print(f"tgms: broadcast: {field}: {message}", file=sys.stderr)
    return 2


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name in some containers
        return "cli"


def _send_at(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_send_time(value)
    except ValueError as exc:
        raise ValidationError("send_at", str(exc)) from None


def _send(args: argparse.Namespace) -> int:
    data: dict[str, Any] = {"final": args.final, "paid": args.paid}
    for name in ("text", "photo_url", "caption", "parse_mode"):
        if getattr(args, name) is not None:
            data[name] = getattr(args, name)
    send_at = _send_at(args.send_at)
    if send_at is not None:
        data["send_at"] = send_at
    if args.phase:
        data["target"] = {"phase": args.phase}
    elif args.groups or args.group:
        data["target"] = {"group_ids": list(args.groups or args.group)}
    if args.button:
        data["buttons"] = [[buttons.parse_option(part) for part in row.split(" | ")] for row in args.button]
    if args.delete_after is not None:
        data["delete_after"] = args.delete_after
    if args.test_chat is not None and not args.test:
        raise ValidationError("test_chat_id", "--test-chat goes with --test")
    if args.test:
        data["test"] = True
        data["test_chat_id"] = args.test_chat
    photo = broadcast_ab.collect(args, data)
    settings, url = prepare(logging_on=False)
    sub = submission.prepare(data, settings.public_base_url, photo)
    reply = asyncio.run(_create(url, sub, settings.test_chat_id))
    print(json.dumps(reply))
    if sub.options.test:  # one test send per A/B variant: each outcome is reported
        outcomes = [_await_test(url, int(t), max(0.0, args.test_wait)) for t in reply["test_send_ids"]]
        return max(outcomes)
    return 0


async def _create(url: str, sub: submission.Submission, test_chat: int | None) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return await submission.submit(conn, sub, _who(), test_chat)


def _await_test(url: str, test_send_id: int, timeout: float = TEST_WAIT_SECONDS) -> int:
    """Wait (a while) for a worker to send the test; its outcome on stderr; 1 if Telegram refused it."""

    async def outcome() -> Any:
        deadline = time.monotonic() + timeout
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            while True:
                found = await test_sends.get(conn, test_send_id)
                if found is None or found.status != "pending" or time.monotonic() > deadline:
                    return found
                await asyncio.sleep(0.3)

    found = asyncio.run(outcome())
    if found is None or found.status == "pending":
        print(f"tgms: broadcast: test send {test_send_id} is queued; is a TGMS worker running?", file=sys.stderr)
        return 0
    if found.status == "failed":
        print(f"tgms: broadcast: test send to {found.chat_id} failed: {found.error}", file=sys.stderr)
        return 1
    print(f"test send delivered to chat {found.chat_id} (message {found.telegram_message_id})", file=sys.stderr)
    return 0


def _other(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    if args.action == "edit":
        for name in ("text", "caption"):
            if getattr(args, name) is not None:
                changes[name] = getattr(args, name)
        if args.parse_mode is not None:
            changes["parse_mode"] = None if args.parse_mode == "none" else args.parse_mode
        if args.send_at is not None:
            changes["send_at"] = _send_at(args.send_at)
        if not changes:
            return _refused("edit", "nothing to change: give --text, --caption, --parse-mode or --send-at")
    _settings, url = prepare(logging_on=False)
    try:
        if args.action == "send-winner":
            return asyncio.run(broadcast_ab.send_winner(url, args, _who()))
        return asyncio.run(_act(url, args, changes))
    except BroadcastNotFound as exc:
        print(f"tgms: broadcast: {exc}", file=sys.stderr)
        return 1
    except BroadcastStateError as exc:
        print(f"tgms: broadcast: {exc}", file=sys.stderr)
        return 1


async def _act(url: str, args: argparse.Namespace, changes: dict[str, Any]) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        if args.action == "list":
            found = await broadcasts.list_broadcasts(conn, limit=args.limit, before=args.before)
            if args.json:
                print(json.dumps(broadcasts.page_json(found, args.limit), ensure_ascii=False))
            else:
                _print_list(found)
            return 0
        if args.action == "show":
            b = await broadcasts.get_broadcast(conn, args.broadcast_id)
            deliveries = await broadcasts.deliveries(conn, b.broadcast_id)
            reach = await broadcasts.targets_now(conn, b) if b.status == "pending" else None
            done_after = await followups.detail(conn, b.broadcast_id)
            rows = await buttons.of(conn, b.broadcast_id)
            ab_report = await broadcast_variants.report(conn, b.broadcast_id)
            if args.json:
                body = broadcasts.detail_json(b, deliveries, reach)
                body["buttons"] = rows
                body["followups"] = done_after
                body["ab"] = None if ab_report is None else broadcast_variants.report_json(ab_report)
                print(json.dumps(body, ensure_ascii=False))
            else:
                _print_detail(b, deliveries, reach)
                if rows:
                    print("\nbuttons:\n" + buttons.preview(rows))
                if ab_report is not None:
                    print("\n".join(broadcast_variants.report_lines(ab_report)))
                for outcome in done_after:
                    print(followups.describe(outcome))
            return 0
        if args.action == "cancel":
            before = await broadcasts.get_broadcast(conn, args.broadcast_id)
            b = await broadcasts.cancel(conn, args.broadcast_id, _who())
            await conn.commit()
            if args.json:
                print(json.dumps(broadcasts.summary_json(b), ensure_ascii=False))
            elif before.status == "pending":
                print(f"broadcast {b.broadcast_id} cancelled before it started: nothing was sent")
            else:
                print(
                    f"broadcast {b.broadcast_id} cancelled: {b.sent} sent, {b.pending} in flight (recorded as "
                    f"they end), {b.skipped} skipped, {b.failed} failed, {b.ambiguous} ambiguous"
                )
            return 0
        if args.action in ("retract", "pin", "unpin") or (
            args.action == "edit" and (await broadcasts.get_broadcast(conn, args.broadcast_id)).status != "pending"
        ):
            return await _followup(conn, args, changes)
        b = await broadcasts.edit_scheduled(conn, args.broadcast_id, changes)
        await conn.commit()
        if args.json:
            print(json.dumps(broadcasts.summary_json(b), ensure_ascii=False))
        else:
            print(f"broadcast {b.broadcast_id} updated; sends {_when(b.send_at) if b.send_at else 'now'}")
        return 0


async def _followup(conn: Any, args: argparse.Namespace, changes: dict[str, Any]) -> int:
    """Edit, retract, pin or unpin the copies of a broadcast that went out: a job does it group by group."""
    if "send_at" in changes:
        raise ValidationError("send_at", "the broadcast has started: its send time can no longer change")
    followup_id = await followups.request(
        conn, args.broadcast_id, args.action, _who(), changes=changes, silent=getattr(args, "silent", False)
    )
    await conn.commit()
    if args.json:
        print(json.dumps({"status": "ok", "broadcast_id": args.broadcast_id, "followup_id": followup_id,
                          "action": args.action}))  # fmt: skip
    else:
        print(
            f"broadcast {args.broadcast_id}: {args.action} #{followup_id} enqueued; "
            f"`tgms broadcast show {args.broadcast_id}` shows each group's outcome"
        )
    return 0


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def describe_target(b: BroadcastSummary) -> str:
    target = b.target
    if target.get("kind") == "phase":
        where = f"phase {target.get('phase')}"
    elif target.get("kind") == "groups":
        where = f"{len(target.get('group_ids', []))} listed group(s)"
    else:
        where = "all"
    return where + (" +final" if b.is_final else "")


def _first_line(b: BroadcastSummary, width: int) -> str:
    body = b.body.strip().splitlines()[0] if b.body.strip() else ("[photo]" if b.photo_url else "")
    return body if len(body) <= width else body[: width - 1] + "…"


def _print_list(found: list[BroadcastSummary]) -> None:
    print(
        f"{'id':>6}  {'status':<22} {'target':<18} {'sent':>5} {'fail':>5} {'ambig':>5} {'pend':>5}  "
        f"{'created':<19}  {'scheduled':<19}  {'finished':<19}  {'by':<16} text"
    )
    for b in found:
        label, _severity = broadcasts.outcome(b)
        print(
            f"{b.broadcast_id:>6}  {label:<22} {describe_target(b):<18} {b.sent:>5} {b.failed:>5} {b.ambiguous:>5} "
            f"{b.pending:>5}  {_when(b.created_at):<19}  {_when(b.send_at):<19}  {_when(b.finished_at):<19}  "
            f"{(b.created_by or '')[:16]:<16} {_first_line(b, 40)}"
        )
    print(f"{len(found)} broadcast(s)")


def _print_detail(b: BroadcastSummary, deliveries: list[Any], reach: int | None) -> None:
    label, _severity = broadcasts.outcome(b)
    print(f"broadcast {b.broadcast_id}: {label} (status {b.status})")
    if b.error:
        print(f"  error:     {b.error}")
    kind = f"photo {b.photo_url}" if b.photo_url else "text"
    print(f"  content:   {kind}, {b.parse_mode or 'plain text'}: {_first_line(b, 60)}")
    print(f"  target:    {describe_target(b)}" + (f" ({reach} group(s) now)" if reach is not None else ""))
    if b.paid:
        print(f"  paid:      allow_paid_broadcast; {paid_broadcasts.describe_cost(b.total or reach or 0)}")
    print(f"  by:        {b.created_by or '—'}" + (f"; cancelled by {b.cancelled_by}" if b.cancelled_by else ""))
    print(
        f"  created:   {_when(b.created_at)}; scheduled {_when(b.send_at)}; started {_when(b.started_at)}; "
        f"finished {_when(b.finished_at)}"
    )
    print(
        f"  groups:    {b.total}: {b.sent} sent, {b.failed} failed, {b.ambiguous} ambiguous, {b.pending} pending, "
        f"{b.skipped} skipped"
    )
    if deliveries:
        print(f"\n{'group':>16}  {'status':<10} {'debug code':<14} {'msg id':>8} {'tries':>5}  error")
        for d in deliveries:
            print(
                f"{d.chat_id:>16}  {d.status:<10} {d.debug_code or '—':<14} {d.telegram_message_id or '—':>8} "
                f"{d.attempts:>5}  {d.error or ''}"
            )
