"""`tgms groups list|add|set` and `tgms broadcast`: scriptable admin actions on the same backend code
the TUI and the admin API use (so a broadcast from the shell is exactly an API broadcast)."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import psycopg

from tgms_tui.backend import broadcasts, group_actions, groups, join_gate
from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.message_validation import ValidationError, validate_broadcast

from . import join_requests


class _Groups:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        sub.add_parser("list", help="list managed groups")
        add = sub.add_parser("add", help="register a group (the bot must be an admin there)")
        add.add_argument("group_id", type=int, help="Telegram chat id, e.g. -1001234567890")
        add.add_argument("--title", default="")
        add.add_argument("--type", dest="chat_type", choices=["group", "supergroup"], default="supergroup")
        add.add_argument("--phase", choices=["growth", "monitoring"], default="growth")
        add.add_argument("--admin-user-id", type=int, default=None)
        add.add_argument("--inactivity-days", type=int, default=None, help="opt in to kicking inactive members")
        st = sub.add_parser("set", help="change a group")
        st.add_argument("group_id", type=int)
        st.add_argument("--active", choices=["yes", "no"])
        st.add_argument("--phase", choices=["growth", "monitoring"])
        st.add_argument("--final-message-allowed", choices=["yes", "no"])
        join_requests.add_gate_arguments(st)
        release = sub.add_parser("release", help="end a group's anti-raid hold now")
        release.add_argument("group_id", type=int)

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        _settings, url = prepare(logging_on=False)
        return asyncio.run(_groups(url, args))


async def _groups(url: str, args: argparse.Namespace) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        if args.action == "list":
            rows = await groups.list_all(conn)
            print(
                f"{'group_id':>16}  {'title':<28} {'type':<10} {'phase':<10} {'active':<6} {'final':<5} "
                f"{'members':>7} {'fails':>5}  reason"
            )
            for r in rows:
                print(
                    f"{r[0]:>16}  {r[1][:28]:<28} {r[2]:<10} {r[3]:<10} {'yes' if r[4] else 'NO':<6} "
                    f"{'yes' if r[5] else 'no':<5} {'' if r[6] is None else r[6]:>7} {r[7]:>5}  {r[8] or ''}"
                )
            print(f"{len(rows)} group(s), {sum(1 for r in rows if r[4])} active")
            return 0
        if args.action == "add":
            await groups.register(
                conn,
                args.group_id,
                title=args.title,
                chat_type=args.chat_type,
                phase=args.phase,
                admin_user_id=args.admin_user_id,
                inactivity_days=args.inactivity_days,
            )
            await conn.commit()
            print(f"group {args.group_id} registered")
            return 0
        if args.action == "release":
            try:
                await join_gate.release_group(conn, args.group_id)
            except join_gate.GroupNotFound:
                print(f"tgms: groups: no managed group {args.group_id}")
                return 1
            await conn.commit()
            print(f"group {args.group_id} released")
            return 0
        try:
            await join_requests.apply_group_gate(conn, args.group_id, args)
            if args.active is not None:
                await group_actions.set_active(conn, args.group_id, args.active == "yes")
            if args.phase is not None:
                await group_actions.set_phase(conn, args.group_id, args.phase)
            if args.final_message_allowed is not None:
                await group_actions.set_final_message_allowed(conn, args.group_id, args.final_message_allowed == "yes")
        except (group_actions.GroupNotFound, join_gate.GroupNotFound):
            print(f"tgms: groups: no managed group {args.group_id}")
            return 1
        except ValueError as exc:
            print(f"tgms: groups: {exc}")
            return 2
        await conn.commit()
        print(f"group {args.group_id} updated")
        return 0


class _Broadcast:
    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        content = parser.add_mutually_exclusive_group(required=True)
        content.add_argument("--text", help="message text (1-4096 characters)")
        content.add_argument("--photo-url", help="http(s) URL of a photo")
        parser.add_argument("--caption", help="photo caption (up to 1024 characters)")
        parser.add_argument("--parse-mode", choices=["Markdown", "MarkdownV2", "HTML"])
        target = parser.add_mutually_exclusive_group()
        target.add_argument("--phase", choices=["growth", "monitoring"], help="only groups in this phase")
        target.add_argument("--groups", help="comma-separated group ids")
        parser.add_argument(
            "--final", action="store_true", help="also reach inactive groups whose final_message_allowed is true"
        )
        parser.add_argument("--send-at", help="ISO-8601 time with timezone, e.g. 2026-12-01T09:00:00+00:00")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        data: dict[str, Any] = {"final": args.final}
        for name in ("text", "photo_url", "caption", "parse_mode", "send_at"):
            if getattr(args, name) is not None:
                data[name] = getattr(args, name)
        if args.phase:
            data["target"] = {"phase": args.phase}
        elif args.groups:
            try:
                data["target"] = {"group_ids": [int(g) for g in args.groups.split(",") if g.strip()]}
            except ValueError:
                print("tgms: broadcast: --groups must be comma-separated integers")
                return 2
        try:
            request = validate_broadcast(data)
        except ValidationError as exc:
            print(f"tgms: broadcast: {exc.field}: {exc.message}")
            return 2
        _settings, url = prepare(logging_on=False)
        broadcast_id, groups = asyncio.run(_create(url, request))
        print(
            json.dumps(
                {"status": "ok", "message": "Broadcast enqueued", "broadcast_id": broadcast_id, "groups": groups}
            )
        )
        return 0


async def _create(url: str, request: Any) -> tuple[int, int]:
    async with await psycopg.AsyncConnection.connect(url) as conn, conn.transaction():
        return await broadcasts.create_broadcast(conn, request, created_by="cli")


command_groups = _Groups()
command_broadcast = _Broadcast()
