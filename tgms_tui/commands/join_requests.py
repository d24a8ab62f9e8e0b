"""`tgms join-requests list|approve|decline|raid` and the join-gate options of `tgms groups set` /
`tgms groups release`: the manual queue and the anti-raid hold from the shell, on the same backend
calls the TUI and the admin API make. Decisions are queued for the TGMS worker, which carries them
out at the bot's rate."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import psycopg

from tgms_tui.backend import join_gate
from tgms_tui.backend.bootstrap import prepare

STATUSES = ("pending", "held", "ambiguous", "verifying", "processing", "approved", "declined", "verification_failed",
            "expired", "failed", "already_member", "skipped_unmanaged", "skipped_inactive", "banned")  # fmt: skip


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """The join-gate options of `tgms groups set`."""
    parser.add_argument("--join-policy", choices=list(join_gate.POLICIES), help="auto | verify | manual")
    parser.add_argument("--verify-text", help="the private message sent to requesters ({group} = the title)")
    parser.add_argument("--verify-question", help="a question shown under the text (needs --verify-answers)")
    parser.add_argument("--verify-answers", help="comma-separated answers, the right one first (shown shuffled)")
    parser.add_argument("--verify-timeout", type=int, help="seconds a requester has to press (default 120)")
    parser.add_argument("--verify-fallback", choices=list(join_gate.FALLBACKS),
                        help="wrong answer, no answer or unreachable: decline (default) or manual queue")  # fmt: skip
    parser.add_argument("--manual-expire-hours", type=int, help="decline queued requests after N hours (0: keep)")
    parser.add_argument("--raid-per-minute", type=int,
                        help="hold the group above N requests a minute (0: off, -1: the fleet's default)")  # fmt: skip


def gate_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for option, name in (("join_policy", "join_policy"), ("verify_text", "verify_text"),
                         ("verify_question", "verify_question"), ("verify_timeout", "verify_timeout_seconds"),
                         ("verify_fallback", "verify_fallback")):  # fmt: skip
        if getattr(args, option, None) is not None:
            fields[name] = getattr(args, option)
    if getattr(args, "verify_answers", None) is not None:
        fields["verify_answers"] = [a.strip() for a in args.verify_answers.split(",") if a.strip()]
    if getattr(args, "manual_expire_hours", None) is not None:
        fields["manual_expire_hours"] = args.manual_expire_hours or None
    if getattr(args, "raid_per_minute", None) is not None:
        fields["raid_per_minute"] = None if args.raid_per_minute < 0 else args.raid_per_minute
    return fields


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", help="list join requests (default: those waiting for an operator)")
    ls.add_argument("--status", default=",".join(join_gate.QUEUE),
                    help=f"comma-separated statuses (default {','.join(join_gate.QUEUE)}: the queue)")  # fmt: skip
    ls.add_argument("--group", type=int, help="only this group")
    ls.add_argument("--json", action="store_true", help="one JSON array")
    for name in ("approve", "decline"):
        sp = sub.add_parser(name, help=f"{name} waiting requests (queued for the TGMS worker)")
        sp.add_argument("request_ids", type=int, nargs="*", help="request ids (from `list`)")
        sp.add_argument("--group", type=int, help="every waiting request of this group")
        sp.add_argument("--link", metavar="NAME_OR_ID",
                        help="every waiting request that came through this invite link: a source's name "
                             "(`tgms links list`: its links in every group) or one link's id")  # fmt: skip
    raid = sub.add_parser("raid", help="show or change the anti-raid thresholds")
    raid.add_argument("--group-per-minute", type=int, help="default per-group threshold (0: off)")
    raid.add_argument("--fleet-per-minute", type=int, help="fleet-wide threshold (0: off)")
    raid.add_argument("--calm-seconds", type=int, help="a hold ends this long after the rate fell below it")
    raid.add_argument("--release-fleet", action="store_true", help="end the fleet's hold now")


def run(args: argparse.Namespace) -> int:
    _settings, url = prepare(logging_on=False)
    return asyncio.run(_run(url, args))


async def _run(url: str, args: argparse.Namespace) -> int:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        if args.action == "list":
            statuses = tuple(s.strip() for s in args.status.split(",") if s.strip())
            bad = [s for s in statuses if s not in STATUSES]
            if bad:
                print(f"tgms: join-requests: unknown status {bad[0]!r}")
                return 2
            rows = await join_gate.list_requests(conn, statuses, args.group)
            if args.json:
                print(json.dumps([_row_json(r) for r in rows]))
                return 0
            print(f"{'id':>8}  {'group':>16}  {'user':>12}  {'username':<16} {'status':<10} {'requested':<19}  note")
            for r in rows:
                print(f"{r.request_id:>8}  {r.chat_id:>16}  {r.user_id:>12}  {(r.username or '')[:16]:<16} "
                      f"{r.status:<10} {r.requested_at:%Y-%m-%d %H:%M:%S}  {r.note or ''}")  # fmt: skip
            print(f"{len(rows)} request(s)")
            return 0
        if args.action in ("approve", "decline"):
            if not args.request_ids and args.group is None and args.link is None:
                print(f"tgms: join-requests: {args.action}: name request ids, --group or --link")
                return 2
            if args.link is not None and not args.link.strip():
                print(f"tgms: join-requests: {args.action}: --link needs a link's name or id")
                return 2
            try:
                job, ids = await join_gate.request_decisions(
                    conn, args.action, by="cli", ids=args.request_ids or None, group_id=args.group,
                    link=None if args.link is None else args.link.strip(),
                )  # fmt: skip
            except join_gate.LinkNotFound as exc:
                print(f"tgms: join-requests: {args.action}: --{exc}")
                return 2
            await conn.commit()
            if not ids:
                print(f"tgms: join-requests: {args.action}: no waiting request matches")
                return 1
            print(json.dumps({"status": "ok", "decision": args.action, "job_id": job, "request_ids": ids}))
            return 0
        try:
            fleet = await join_gate.set_fleet(
                conn,
                group_per_minute=args.group_per_minute,
                fleet_per_minute=args.fleet_per_minute,
                calm_seconds=args.calm_seconds,
            )
        except ValueError as exc:
            print(f"tgms: join-requests: raid: {exc}")
            return 2
        if args.release_fleet:
            await join_gate.release_fleet(conn)
            fleet = await join_gate.fleet(conn)
        await conn.commit()
        print(json.dumps(_fleet_json(fleet)))
        return 0


async def apply_group_gate(conn: psycopg.AsyncConnection[Any], group_id: int, args: argparse.Namespace) -> None:
    """`tgms groups set ID --join-policy ...`; ValueError for a bad value, GroupNotFound."""
    fields = gate_fields(args)
    if fields:
        await join_gate.set_group_gate(conn, group_id, fields)


def _row_json(row: join_gate.QueuedRequest) -> dict[str, Any]:
    data = row._asdict()
    data["requested_at"] = row.requested_at.isoformat() if row.requested_at else None
    return data


def _fleet_json(fleet: join_gate.FleetGate) -> dict[str, Any]:
    data = fleet._asdict()
    for key in ("fleet_held_since", "fleet_held_until"):
        data[key] = data[key].isoformat() if data[key] else None
    return data
