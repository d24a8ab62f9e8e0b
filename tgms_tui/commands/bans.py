"""`tgms ban`, `tgms unban`, `tgms bans list|show` and `tgms links create|list|revoke`: the fleet's ban
list and named invite links from the shell, on the same backend code as the TUI and the admin API.

A ban or a link only enqueues its job (the TGMS worker applies it in every group, paced); `--wait`
waits for the outcome per group.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import time
from typing import Any

import psycopg

from tgms_tui.backend import bans, invite_links
from tgms_tui.backend.bootstrap import prepare


def _who() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _group_ids(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        ids = [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise bans.BanError("--groups must be comma-separated group ids") from None
    if not ids:
        raise bans.BanError("--groups is empty")
    return ids


class _Ban:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("user_id", help="the Telegram user id to ban in every managed group")
        parser.add_argument("--reason", required=True, help="why (kept with the ban)")
        parser.add_argument("--until", help="when it ends: a duration (30m, 12h, 7d, 2w) or an ISO-8601 time")
        parser.add_argument("--wait", action="store_true", help="wait until every group has its outcome")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        try:
            user_id = bans.check_user_id(args.user_id)
            reason = bans.check_reason(args.reason)
            until = bans.parse_until(args.until)
        except bans.BanError as exc:
            print(f"tgms: ban: {exc}")
            return 2
        _settings, url = prepare(logging_on=False)
        return asyncio.run(_ban(url, user_id, reason, until, args.wait))


async def _ban(url: str, user_id: int, reason: str, until: Any, wait: bool) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        try:
            ban_id, todo = await bans.ban(conn, user_id, reason, _who(), until)
        except bans.BanError as exc:
            print(f"tgms: ban: {exc}")
            return 1
        ends = f" until {until.isoformat()}" if until else ""
        print(f"user {user_id} banned{ends} (ban {ban_id}): applying in {todo} group(s)")
        if wait:
            return await _wait(conn, ban_id, "ban")
    return 0


class _Unban:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("user_id", help="the Telegram user id whose fleet ban to lift")
        parser.add_argument("--wait", action="store_true", help="wait until every group has its outcome")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        try:
            user_id = bans.check_user_id(args.user_id)
        except bans.BanError as exc:
            print(f"tgms: unban: {exc}")
            return 2
        _settings, url = prepare(logging_on=False)
        return asyncio.run(_unban(url, user_id, args.wait))


async def _unban(url: str, user_id: int, wait: bool) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        try:
            ban_id, todo = await bans.unban(conn, user_id, _who())
        except bans.BanError as exc:
            print(f"tgms: unban: {exc}")
            return 1
        print(f"user {user_id} unbanned (ban {ban_id}): lifting in {todo} group(s)")
        if wait:
            return await _wait(conn, ban_id, "unban")
    return 0


async def _wait(conn: psycopg.AsyncConnection[Any], ban_id: int, action: str, timeout: float = 3600.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in await bans.groups_of(conn, ban_id) if r.action == action]
        await conn.commit()
        if all(r.status not in ("pending", "applying") for r in rows):
            break
        if time.monotonic() > deadline:
            print(f"tgms: {action}: still running after {timeout:.0f} s; see `tgms bans show`")
            return 1
        await asyncio.sleep(0.5)
    for r in rows:
        print(f"{r.group_id:>16}  {r.status:<8} {r.bot or '':<5} {r.error or ''}")
    counts = {s: sum(1 for r in rows if r.status == s) for s in ("done", "failed", "skipped")}
    print(", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


class _Bans:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        ls = sub.add_parser("list", help="the fleet's ban list")
        ls.add_argument("--all", action="store_true", help="lifted and expired bans too")
        ls.add_argument("--json", action="store_true", help="JSON instead of a table")
        show = sub.add_parser("show", help="one user's latest ban, group by group")
        show.add_argument("user_id")
        show.add_argument("--json", action="store_true")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        user_id = None
        if args.action == "show":
            try:
                user_id = bans.check_user_id(args.user_id)
            except bans.BanError as exc:
                print(f"tgms: bans: {exc}")
                return 2
        _settings, url = prepare(logging_on=False)
        return asyncio.run(_bans(url, args, user_id))


async def _bans(url: str, args: argparse.Namespace, user_id: int | None) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        if user_id is not None:
            ban_id = await bans.latest_ban_id(conn, user_id)
            if ban_id is None:
                print(f"tgms: bans: user {user_id} was never banned")
                return 1
            found = [b for b in await bans.list_bans(conn, include_lifted=True) if b.ban_id == ban_id]
            rows = await bans.groups_of(conn, ban_id)
            if args.json:
                print(json.dumps({**found[0].as_json(), "per_group": [r.as_json() for r in rows]}, indent=2))
                return 0
            _print_bans(found)
            for r in rows:
                print(f"{r.action:<6} {r.group_id:>16}  {(r.title or '')[:24]:<24} {r.status:<8} {r.bot or '':<5} "
                      f"{r.error or ''}")  # fmt: skip
            return 0
        listed = await bans.list_bans(conn, include_lifted=args.all)
        if args.json:
            print(json.dumps([b.as_json() for b in listed], indent=2))
            return 0
        _print_bans(listed)
        print(f"{len(listed)} ban(s), {sum(1 for b in listed if b.in_force)} in force")
        return 0


def _print_bans(listed: list[bans.Ban]) -> None:
    print(f"{'user_id':>12}  {'state':<8} {'until':<20} {'by':<18} {'banned at':<20} {'groups':<22} reason")
    for b in listed:
        until = b.until.strftime("%Y-%m-%d %H:%M") if b.until else "for ever"
        o = b.unban_outcome if b.lifted_at is not None and b.lifted_by != "expired" else b.ban_outcome
        groups = f"{o['done']} done {o['failed']} failed" + (f" {o['pending']} todo" if o["pending"] else "")
        print(f"{b.user_id:>12}  {b.state:<8} {until:<20} {b.banned_by[:18]:<18} "
              f"{b.banned_at.strftime('%Y-%m-%d %H:%M'):<20} {groups:<22} {b.reason}")  # fmt: skip


class _Links:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = sub.add_parser("create", help="a named link that creates join requests, in each chosen group")
        create.add_argument("--name", required=True, help="the source the link is for (up to 32 characters)")
        create.add_argument("--groups", help="comma-separated group ids (default: every active group)")
        ls = sub.add_parser("list", help="per link: requests, approved, declined, joined, retention, members")
        ls.add_argument("--name", help="only this source")
        ls.add_argument("--groups", action="store_true", help="one line per group too")
        ls.add_argument("--json", action="store_true", help="JSON instead of a table")
        revoke = sub.add_parser("revoke", help="revoke every link of a source")
        revoke.add_argument("--name", required=True)
        revoke.add_argument("--groups", help="only in these groups (comma-separated ids)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        try:
            name = invite_links.check_name(args.name) if args.name is not None else None
            groups = _group_ids(args.groups) if args.action != "list" else None
        except (bans.BanError, invite_links.LinkError) as exc:
            print(f"tgms: links: {exc}")
            return 2
        _settings, url = prepare(logging_on=False)
        return asyncio.run(_links(url, args, name, groups))


async def _links(url: str, args: argparse.Namespace, name: str | None, groups: list[int] | None) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        if args.action == "create":
            assert name is not None
            try:
                todo = await invite_links.create(conn, name, groups, _who())
            except invite_links.LinkError as exc:
                print(f"tgms: links: {exc}")
                return 1
            print(f"link {name!r}: creating in {todo} group(s)" if todo else f"link {name!r} exists in those groups")
            return 0
        if args.action == "revoke":
            assert name is not None
            todo = await invite_links.revoke(conn, name, groups)
            if not todo:
                print(f"tgms: links: no active link named {name!r}")
                return 1
            print(f"link {name!r}: revoking in {todo} group(s)")
            return 0
        sources = await invite_links.stats(conn, name)
        if args.json:
            print(json.dumps([s.as_json() for s in sources], indent=2, default=str))
            return 0
        _print_links(sources, per_group=args.groups)
        return 0


def _print_links(sources: list[invite_links.SourceLinks], *, per_group: bool) -> None:
    rate = invite_links.LinkFigures.rate
    print(f"{'name':<20} {'links':<14} {'requests':>8} {'approved':>8} {'declined':>8} {'joined':>6} "
          f"{'7d stay':>8} {'30d stay':>8} {'members':>7} {'active':>6}")  # fmt: skip
    for s in sources:
        f = s.figures
        states = " ".join(f"{n} {k}" for k, n in sorted(s.statuses.items()))
        print(f"{s.name[:20]:<20} {states[:14]:<14} {f.requests:>8} {f.approved:>8} {f.declined:>8} {f.joined:>6} "
              f"{rate(f.stayed_7d, f.joined_7d_ago):>8} {rate(f.stayed_30d, f.joined_30d_ago):>8} "
              f"{f.members:>7} {f.active:>6}")  # fmt: skip
        if per_group:
            for link in s.links:
                g = link.figures
                print(f"  {link.group_id:>16} {link.status:<8} {g.requests:>8} {g.approved:>8} {g.declined:>8} "
                      f"{g.joined:>6} {link.invite_link or link.error or ''}")  # fmt: skip
    print(f"{len(sources)} source(s)")


command_ban = _Ban()
command_unban = _Unban()
command_bans = _Bans()
command_links = _Links()
