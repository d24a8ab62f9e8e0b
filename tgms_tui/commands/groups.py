"""`tgms groups list|add|set|remove|release`: managed groups from the shell, on the same backend code the TUI
uses.

`add` and reactivating (`set --active yes`) ask Telegram first, with the group-management bot
(TGMS_BOT_TOKEN, else BOT_TOKEN): the chat must be a group or supergroup whose administrators include
the bot with 'Invite Users via Link' (workers/group_check.py, the check the TGMS worker runs for the
control center). A chat that fails the check is refused with the reason, exit 2; `add` stores the
title and type Telegram reports. `remove` deletes the group's row only: its history (broadcast
deliveries, join requests, member counts, kicks) stays. `set --join-policy ...` sets the group's join
gate and `release` ends its anti-raid hold (docs/join-requests.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import psycopg

from tgms_tui.backend import group_actions, groups, join_gate
from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.config import ConfigError, Settings
from workers.group_check import ChatCheck, check_chat
from workers.telegram_api import TelegramClient, TelegramError

from . import join_requests

REFUSED = 2


def _yes_no(value: str) -> bool:
    return value == "yes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Managed groups: list them, add one (checked with Telegram: the bot must be an administrator "
        "that may invite users), change one, or remove one."
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="list managed groups", description="List every managed group.")
    ls.add_argument("--json", action="store_true", help="one JSON array of objects instead of a table")
    add = sub.add_parser(
        "add",
        help="register a group by id (looked up with Telegram; the bot must be an admin there)",
        description="Register a group by id. Telegram is asked first: the chat must be a group or "
        "supergroup where the bot is an administrator with 'Invite Users via Link'; its title and "
        "type are taken from Telegram.",
    )
    add.add_argument("group_id", type=int, help="Telegram chat id, e.g. -1001234567890")
    add.add_argument("--title", default=None, help="store this title instead of the chat's")
    add.add_argument("--phase", choices=groups.PHASES, default=None, help="growth (default for a new group)")
    add.add_argument("--admin-user-id", type=int, default=None)
    add.add_argument("--inactivity-days", type=int, default=None, help="opt in to kicking inactive members")
    st = sub.add_parser("set", help="change a group", description="Change a managed group.")
    st.add_argument("group_id", type=int)
    st.add_argument(
        "--active", choices=["yes", "no"], help="yes: reactivate (the bot's rights are checked with Telegram first)"
    )
    st.add_argument(
        "--force", action="store_true", help="with --active yes: reactivate even if the bot lacks the rights"
    )
    st.add_argument("--phase", choices=groups.PHASES)
    st.add_argument("--final-message-allowed", choices=["yes", "no"])
    st.add_argument("--title", help="rename the group in TGMS (Telegram's title changes are followed anyway)")
    join_requests.add_gate_arguments(st)
    release = sub.add_parser("release", help="end a group's anti-raid hold now")
    release.add_argument("group_id", type=int)
    rm = sub.add_parser(
        "remove",
        help="stop managing a group (its history is kept)",
        description="Delete a group's managed_groups row. What was sent there, its join requests, member "
        "counts and kicks are kept. The bot stays in the group: remove it there too, or a later promotion "
        "registers the group again.",
    )
    rm.add_argument("group_id", type=int)
    rm.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def run(args: argparse.Namespace) -> int:
    _settings, url = prepare(logging_on=False)
    if args.action == "list":
        return asyncio.run(_list(url, as_json=args.json))
    if args.action == "add":
        return asyncio.run(_add(_settings, url, args))
    if args.action == "set":
        return asyncio.run(_set(_settings, url, args))
    if args.action == "release":
        return asyncio.run(_release(url, args.group_id))
    return asyncio.run(_remove(url, args))


def _fail(text: str, code: int = 1) -> int:
    print(f"tgms groups: {text}", file=sys.stderr)
    return code


# ------------------------------------------------------------------ list


async def _list(url: str, *, as_json: bool) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        rows = await groups.list_all(conn)
    if as_json:
        print(json.dumps([r._asdict() for r in rows], indent=2))
        return 0
    print(
        f"{'group_id':>16}  {'title':<28} {'type':<10} {'phase':<10} {'active':<6} {'final':<5} "
        f"{'members':>7} {'fails':>5}  reason"
    )
    for r in rows:
        print(
            f"{r.group_id:>16}  {r.title[:28]:<28} {r.chat_type:<10} {r.phase:<10} {'yes' if r.is_active else 'NO':<6} "
            f"{'yes' if r.final_message_allowed else 'no':<5} {'' if r.member_count is None else r.member_count:>7} "
            f"{r.consecutive_failures:>5}  {r.deactivated_reason or ''}"
        )
    print(f"{len(rows)} group(s), {sum(1 for r in rows if r.is_active)} active")
    return 0


# ------------------------------------------------------------------ the Telegram check


def _group_bot_token(settings: Settings, why: str) -> str:
    token = settings.tgms_bot_token or settings.bot_token
    if not token:
        raise ConfigError("TGMS_BOT_TOKEN", f"is not set (nor BOT_TOKEN): {why}")
    return token


async def _check(settings: Settings, group_id: int, why: str) -> ChatCheck | int:
    """The chat as Telegram sees it, or an exit code after one line saying why it could not be asked."""
    token = _group_bot_token(settings, why)
    try:
        async with TelegramClient(token, api_base=settings.telegram_api_base) as client:
            return await check_chat(client, group_id)
    except TelegramError as exc:  # its text is redacted
        return _fail(f"could not ask Telegram about {group_id}: {type(exc).__name__}: {exc}")


# ------------------------------------------------------------------ add


async def _add(settings: Settings, url: str, args: argparse.Namespace) -> int:
    if args.inactivity_days is not None and args.inactivity_days < 1:
        raise ConfigError("--inactivity-days", "must be at least 1")
    check = await _check(settings, args.group_id, "`groups add` asks Telegram whether the bot manages the chat")
    if isinstance(check, int):
        return check
    if check.problem is not None:
        return _fail(f"add {args.group_id} refused: {check.problem}", REFUSED)
    title = args.title if args.title is not None else check.title
    async with await psycopg.AsyncConnection.connect(url) as conn:
        done = await groups.register(
            conn,
            args.group_id,
            title=title,
            chat_type=check.chat_type,
            phase=args.phase,
            admin_user_id=args.admin_user_id,
            inactivity_days=args.inactivity_days,
            bot_can_invite=check.can_invite,
        )
        await conn.commit()
    what = "registered" if done.inserted else "updated"
    print(f"group {args.group_id} {title!r} ({check.chat_type}) {what}: the bot is {check.bot_status} there")
    if not done.is_active:
        print(
            f"note: the group is inactive ({done.deactivated_reason or 'no reason recorded'}); "
            f"`tgms groups set {args.group_id} --active yes` reactivates it"
        )
    return 0


# ------------------------------------------------------------------ set


async def _set(settings: Settings, url: str, args: argparse.Namespace) -> int:
    if args.force and args.active != "yes":
        raise ConfigError("--force", "only applies with --active yes")
    if args.title is not None and not args.title.strip():
        raise ConfigError("--title", "must not be empty")
    gate = join_requests.gate_fields(args)
    if not gate and all(getattr(args, n) is None for n in ("active", "phase", "final_message_allowed", "title")):
        raise ConfigError(
            "groups set",
            "nothing to change: give --active, --phase, --final-message-allowed, --title or a --join-policy option",
        )
    async with await psycopg.AsyncConnection.connect(url) as conn:
        known = {r.group_id: r for r in await groups.list_all(conn)}
        if args.group_id not in known:
            return _fail(f"no managed group {args.group_id}")
        if args.active == "yes" and not known[args.group_id].is_active:
            check = await _check(settings, args.group_id, "reactivating asks Telegram whether the bot still manages it")
            if isinstance(check, int):
                return check
            if check.problem is not None:
                if not args.force:
                    return _fail(
                        f"reactivating {args.group_id} refused: {check.problem} (--force reactivates anyway)", REFUSED
                    )
                print(f"warning: reactivating {args.group_id} anyway (--force): {check.problem}", file=sys.stderr)
        try:
            await join_requests.apply_group_gate(conn, args.group_id, args)
            if args.active is not None:
                await group_actions.set_active(conn, args.group_id, _yes_no(args.active))
            if args.phase is not None:
                await group_actions.set_phase(conn, args.group_id, args.phase)
            if args.final_message_allowed is not None:
                await group_actions.set_final_message_allowed(conn, args.group_id, _yes_no(args.final_message_allowed))
            if args.title is not None:
                await groups.set_title(conn, args.group_id, args.title.strip())
        except (group_actions.GroupNotFound, join_gate.GroupNotFound):  # removed meanwhile
            return _fail(f"no managed group {args.group_id}")
        except ValueError as exc:  # a join-gate value out of range
            return _fail(str(exc), REFUSED)
        await conn.commit()
    print(f"group {args.group_id} updated")
    return 0


async def _release(url: str, group_id: int) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        try:
            await join_gate.release_group(conn, group_id)
        except join_gate.GroupNotFound:
            return _fail(f"no managed group {group_id}")
        await conn.commit()
    print(f"group {group_id} released")
    return 0


# ------------------------------------------------------------------ remove


async def _remove(url: str, args: argparse.Namespace) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        known = {r.group_id: r for r in await groups.list_all(conn)}
        row = known.get(args.group_id)
        if row is None:
            return _fail(f"no managed group {args.group_id}")
        if not args.yes and not _confirm(f"Remove group {args.group_id} {row.title!r}? Its history is kept. [y/N] "):
            return _fail("remove: not confirmed (nothing changed; --yes skips the question)", REFUSED)
        removed = await groups.remove(conn, args.group_id)
        await conn.commit()
    if not removed:
        return _fail(f"no managed group {args.group_id}")
    print(
        f"group {args.group_id} removed; its broadcasts, join requests, member counts and kicks are kept. "
        "The bot is still in the group: remove it there, or its next promotion registers the group again."
    )
    return 0


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False
