"""`tgms groups list|add|set`: scriptable admin actions on the same backend code the TUI uses
(`tgms broadcast` lives in broadcast.py)."""

from __future__ import annotations

import argparse
import asyncio

import psycopg

from tgms_tui.backend import group_actions, groups
from tgms_tui.backend.bootstrap import prepare


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
        try:
            if args.active is not None:
                await group_actions.set_active(conn, args.group_id, args.active == "yes")
            if args.phase is not None:
                await group_actions.set_phase(conn, args.group_id, args.phase)
            if args.final_message_allowed is not None:
                await group_actions.set_final_message_allowed(conn, args.group_id, args.final_message_allowed == "yes")
        except group_actions.GroupNotFound:
            print(f"tgms: groups: no managed group {args.group_id}")
            return 1
        await conn.commit()
        print(f"group {args.group_id} updated")
        return 0


command_groups = _Groups()
