"""`tgms hooks add|list|remove|pause|resume|test|replay|log`: outgoing event webhooks from the shell,
on the same backend code as the TUI and the admin API.

`add` prints the subscription's signing secret once; nothing shows it again. Deliveries are made by
the TGMS worker (`tgms worker tgms`); `test` waits for its ping's outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from typing import Any

import psycopg

from tgms_tui.backend import hooks
from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.config import Settings

TEST_WAIT_SECONDS = 30.0


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = sub.add_parser("add", help="subscribe a URL to events; prints its signing secret once")
    add.add_argument("url", help="the receiver: http:// or https://, a public address")
    add.add_argument(
        "--events",
        default="all",
        help=f"comma-separated event types, or 'all' (default: every type but {', '.join(hooks.OPT_IN_EVENTS)}); "
        f"known: {', '.join(hooks.EVENT_TYPES)}",
    )
    ls = sub.add_parser("list", help="the subscriptions and their state (active, paused, failing)")
    ls.add_argument("--json", action="store_true", help="JSON instead of a table")
    for name, text in (
        ("remove", "delete a subscription and its delivery log"),
        ("pause", "stop delivering to a subscription (its pending deliveries wait)"),
        ("resume", "deliver again to a paused or failing subscription"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.add_argument("subscription_id")
    test = sub.add_parser("test", help="send a hook.test event to one subscription and show the outcome")
    test.add_argument("subscription_id")
    test.add_argument("--no-wait", action="store_true", help="queue it and return")
    replay = sub.add_parser(
        "replay", help="send one delivery again (DELIVERY_ID), or a subscription's events of a time range"
    )
    replay.add_argument("delivery_id", nargs="?", help="the delivery to send again")
    replay.add_argument("--subscription", help="with --since/--until: only this subscription (default: every one)")
    replay.add_argument("--since", help="start of the range: a duration ago (2h) or an ISO-8601 time")
    replay.add_argument("--until", help="end of the range (default: now)")
    log = sub.add_parser("log", help="the delivery log, newest first")
    log.add_argument("--subscription", help="only this subscription's deliveries")
    log.add_argument("--status", choices=("pending", "sending", "delivered", "failed"))
    log.add_argument("--limit", type=int, default=50)
    log.add_argument("--json", action="store_true", help="JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    try:
        request = _check(args)
    except hooks.HookError as exc:
        print(f"tgms: hooks {args.action}: {exc}", file=sys.stderr)
        return 2
    settings, url = prepare(logging_on=False)
    return asyncio.run(_run(url, settings, args, request))


def _check(args: argparse.Namespace) -> dict[str, Any]:
    """Everything that needs no database, refused before connecting (exit 2, naming the flag)."""
    if args.action == "add":
        try:
            return {"events": hooks.parse_events(args.events)}
        except hooks.HookError as exc:
            raise hooks.HookError(f"--events: {exc}") from None
    if args.action in ("remove", "pause", "resume", "test"):
        return {"sub": hooks.parse_id(args.subscription_id, "SUBSCRIPTION_ID")}
    if args.action == "replay":
        if args.delivery_id is not None:
            if args.since or args.until or args.subscription:
                raise hooks.HookError("give DELIVERY_ID, or --subscription with --since/--until, not both")
            return {"delivery": hooks.parse_id(args.delivery_id, "DELIVERY_ID")}
        if not args.since:
            raise hooks.HookError("give DELIVERY_ID, or --since T [--until T] [--subscription ID]")
        since = hooks.parse_moment(args.since, "--since")
        until = hooks.parse_moment(args.until, "--until")
        sub = None if args.subscription is None else hooks.parse_id(args.subscription, "--subscription")
        return {"sub": sub, "since": since, "until": until}
    if args.action == "log":
        if args.limit < 1:
            raise hooks.HookError("--limit must be at least 1")
        sub = None if args.subscription is None else hooks.parse_id(args.subscription, "--subscription")
        return {"sub": sub}
    return {}


async def _run(url: str, settings: Settings, args: argparse.Namespace, req: dict[str, Any]) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        try:
            return await _act(conn, settings, args, req)
        except hooks.HookError as exc:
            await conn.rollback()
            print(f"tgms: hooks {args.action}: {exc}", file=sys.stderr)
            return 1


async def _act(
    conn: psycopg.AsyncConnection[Any], settings: Settings, args: argparse.Namespace, req: dict[str, Any]
) -> int:
    action = args.action
    if action == "add":
        sub_id, secret = await hooks.add(
            conn, args.url, req["events"], _who(), allow_private=settings.hooks_allow_private
        )
        await conn.commit()
        print(f"subscription {sub_id}: {args.url} ({', '.join(req['events'])})")
        print(f"secret (shown once, keep it to verify X-TGMS-Signature): {secret}")
        return 0
    if action == "list":
        listed = await hooks.list_subscriptions(conn)
        if args.json:
            print(json.dumps([s.as_json() for s in listed], indent=2))
            return 0
        print(f"{'id':>4}  {'state':<18} {'pending':>7} {'ok 24h':>7}  {'url':<40} events")
        for s in listed:
            print(f"{s.subscription_id:>4}  {s.state:<18} {s.pending:>7} {s.delivered_24h:>7}  {s.url[:40]:<40} "
                  f"{','.join(s.events)}")  # fmt: skip
            if s.status_reason:
                print(f"{'':>6}{s.status_reason}")
        print(f"{len(listed)} subscription(s)")
        return 0
    if action in ("remove", "pause", "resume"):
        done = await {"remove": hooks.remove, "pause": hooks.pause, "resume": hooks.resume}[action](conn, req["sub"])
        await conn.commit()
        if not done:
            print(f"tgms: hooks {action}: no subscription {req['sub']}", file=sys.stderr)
            return 1
        print(f"subscription {req['sub']}: {'removed' if action == 'remove' else action + 'd'}")
        return 0
    if action == "test":
        delivery_id = await hooks.send_test(conn, req["sub"])
        await conn.commit()
        print(f"hook.test queued as delivery {delivery_id}")
        return 0 if args.no_wait else await _wait_test(conn, delivery_id)
    if action == "replay":
        if "delivery" in req:
            new_id = await hooks.replay(conn, req["delivery"])
            await conn.commit()
            print(f"delivery {req['delivery']} queued again as delivery {new_id}")
            return 0
        until = req["until"] or await hooks.db_now(conn)
        chosen = [req["sub"]] if req["sub"] else [s.subscription_id for s in await hooks.list_subscriptions(conn)]
        counts = {sub: await hooks.replay_range(conn, sub, req["since"], until) for sub in chosen}
        await conn.commit()
        for sub, count in counts.items():
            print(f"{count} event(s) from {req['since'].isoformat()} to {until.isoformat()} queued again "
                  f"for subscription {sub}")  # fmt: skip
        return 0
    listed_deliveries = await hooks.deliveries(conn, subscription_id=req["sub"], status=args.status, limit=args.limit)
    if args.json:
        print(json.dumps([d.as_json() for d in listed_deliveries], indent=2))
        return 0
    _print_log(listed_deliveries)
    return 0


def _print_log(rows: list[hooks.Delivery]) -> None:
    print(f"{'delivery':>8} {'sub':>4}  {'event':<22} {'lane':<16} {'status':<9} {'try':>3} {'code':>4} "
          f"{'ms':>7}  error")  # fmt: skip
    for d in rows:
        code = "" if d.last_status_code is None else str(d.last_status_code)
        ms = "" if d.last_latency_ms is None else f"{d.last_latency_ms:.1f}"
        print(f"{d.delivery_id:>8} {d.subscription_id:>4}  {d.event_type:<22} {d.lane[:16]:<16} {d.status:<9} "
              f"{d.attempts:>3} {code:>4} {ms:>7}  {d.last_error or ''}")  # fmt: skip


async def _wait_test(conn: psycopg.AsyncConnection[Any], delivery_id: int) -> int:
    deadline = time.monotonic() + TEST_WAIT_SECONDS
    while True:
        found = await hooks.delivery(conn, delivery_id)
        await conn.commit()
        if found is None:
            print("tgms: hooks test: the delivery is gone (subscription removed?)", file=sys.stderr)
            return 1
        if found.status == "delivered":
            print(f"delivered: HTTP {found.last_status_code} in {found.last_latency_ms or 0:.1f} ms")
            return 0
        if found.status == "failed" or (found.status == "pending" and found.attempts > 0):
            problem = f"attempt {found.attempts} failed: {found.last_error} (retried with backoff)"
            print(f"tgms: hooks test: {problem}", file=sys.stderr)
            return 1
        if time.monotonic() > deadline:
            problem = f"not attempted within {TEST_WAIT_SECONDS:.0f} s; is `tgms worker tgms` running?"
            print(f"tgms: hooks test: {problem}", file=sys.stderr)
            return 1
        await asyncio.sleep(0.2)
