"""`tgms broadcast`: a scriptable admin action on the same backend code the TUI and the admin API use
(so a broadcast from the shell is exactly an API broadcast). `tgms groups` is commands/groups.py."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import psycopg

from tgms_tui.backend import broadcasts
from tgms_tui.backend.bootstrap import prepare
from tgms_tui.backend.message_validation import ValidationError, validate_broadcast


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


command_broadcast = _Broadcast()
