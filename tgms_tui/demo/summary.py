"""What a demo run did, from both sides: TGMS's database and the simulator's record of Bot API calls.

The two are collected independently so that a reader (or `tests/demo`) can check that they agree:
every approval TGMS logged is an approveChatJoinRequest the simulator answered ok, every message
TGMS marks 'sent' is a send the simulator delivered.
"""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from typing import Any

import psycopg

from telegram_sim.control import SimControl
from tgms_tui.backend import fleet

# Job types whose work the summary counts; periodic jobs (member counts, pruning) are left out of
# "is the fleet quiet": one is always scheduled.
UPDATE_JOB_TYPES = ("tgms_process_join_request", "tgms_send_to_groups", "process_telegram_update")
SEND_METHODS = ("sendMessage", "sendPhoto")


def database_busy(url: str) -> int:
    """Jobs and broadcasts still under way or due within seconds (0 = quiet)."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return fleet.busy(conn, UPDATE_JOB_TYPES)


def sim_busy(ctl: SimControl) -> int:
    """Updates the simulator still has to deliver to the webhook."""
    bots = ctl.webhook_deliveries(attempts=0).get("bots", [])
    return sum(int(b.get("pending", 0)) + int(b.get("in_flight", 0)) for b in bots)


def progress_line(url: str) -> str:
    """One line for headless progress: approvals, deliveries, deactivations, queue."""
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        approved, casts, sent, inactive, pending, done, members = fleet.progress(conn)
    return (
        f"{approved} join requests approved · {casts} broadcasts, {sent} messages delivered · "
        f"{inactive} groups deactivated · jobs {done} done, {pending} pending · {members} members"
    )


def collect_database(url: str) -> dict[str, Any]:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return fleet.snapshot(conn)


def collect_simulator(ctl: SimControl, tgms_bot_id: int, fault_kicked: int) -> dict[str, Any]:
    calls = ctl.calls()
    by_method: dict[str, Counter[str]] = {}
    for call in calls:
        by_method.setdefault(call["method"], Counter())["ok" if call["ok"] else "failed"] += 1
    approvals = [c for c in calls if c["method"] == "approveChatJoinRequest"]
    group_sends = [c for c in calls if c["method"] in SEND_METHODS and (c.get("chat_id") or 0) < 0]
    deliveries = ctl.webhook_deliveries(attempts=0).get("bots", [])
    return {
        "calls": len(calls),
        "calls_by_method": {m: dict(c) for m, c in sorted(by_method.items())},
        "approve_ok": sum(1 for c in approvals if c["ok"]),
        "approve_failed": sum(1 for c in approvals if not c["ok"]),
        "group_sends_ok": sum(1 for c in group_sends if c["ok"] and c.get("bot_id") == tgms_bot_id),
        "group_sends_failed": sum(1 for c in group_sends if not c["ok"]),
        "too_many_requests": sum(1 for c in calls if c.get("error_code") == 429),
        "fault_kicked_send_failures": sum(
            1 for c in group_sends if c.get("chat_id") == fault_kicked and not c["ok"] and c.get("error_code") == 403
        ),
        "webhook": [
            {k: b.get(k) for k in ("username", "delivered", "failed_attempts", "pending", "in_flight")}
            for b in deliveries
        ],
        "chats": [
            {"id": c["id"], "type": c["type"], "member_count": c["member_count"], "upgraded_to": c.get("upgraded_to")}
            for c in ctl.chats()
        ],
    }


def _statuses(counts: dict[str, int]) -> str:
    return " · ".join(f"{n} {status}" for status, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


def _exit(code: int | None) -> str:
    if code is None:
        return "STILL RUNNING"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"stopped by {signal.Signals(-code).name}"
    return f"exit {code}"


def format_text(summary: dict[str, Any]) -> str:
    """The plain-text summary printed when a demo ends."""
    db = summary.get("db") or {}
    sim = summary.get("sim") or {}
    traffic = summary.get("traffic") or {}
    world = summary.get("world") or {}
    procs = summary.get("processes") or {}
    lines = [
        f"TGMS demo summary (seed {summary.get('seed')}, {summary.get('groups')} groups, "
        f"{summary.get('duration_seconds', 0):.0f} s of traffic)"
    ]
    if db:
        joins = db["join_requests"]
        lines.append(
            f"  join requests    {_statuses(joins)}"
            + (f"   (simulator: {sim.get('approve_ok')} approvals answered ok)" if sim else "")
        )
        sent = db["sent_messages"]
        lines.append(
            f"  broadcasts       {sum(db['broadcasts'].values())} ({_statuses(db['broadcasts'])}); "
            f"messages delivered {sent.get('sent', 0)}, failed {sent.get('failed', 0)}, "
            f"ambiguous {sent.get('ambiguous', 0)}"
            + (f"   (simulator: {sim.get('group_sends_ok')} sends ok)" if sim else "")
        )
        lines.append(f"  deactivations    {len(db['deactivated'])}")
        for group in db["deactivated"]:
            lines.append(f"    {group['title']} ({group['group_id']}): {group['reason']}")
        if world.get("upgraded_to") is not None:
            managed = world["upgraded_to"] in db.get("group_ids", [])
            lines.append(
                f"  upgrade          {world.get('upgraded_title')}: {world['upgraded_from']} -> "
                f"{world['upgraded_to']} (managed under the new id: {'yes' if managed else 'no'})"
            )
        if sim:
            lines.append(
                f"  429 storm        {sim.get('too_many_requests', 0)} answers 'Too Many Requests' "
                "from the simulator (snoozed, never counted as failures)"
            )
        hooks = summary.get("hooks") or {}
        if hooks:
            kinds = ", ".join(f"{name} {n}" for name, n in hooks["by_type"].items()) or "none"
            lines.append(
                f"  event webhooks   {hooks['received']} delivered to the local receiver, "
                f"{hooks['verified']} with a valid signature: {kinds}"
            )
        groups = db["groups"]
        lines.append(
            f"  groups           {groups['active']} of {groups['total']} active · {groups['members']} "
            f"members · {groups['member_count_records']} member-count records"
        )
        lines.append(f"  jobs             {_statuses(db['jobs_by_status'])}")
        for worker in db["workers"]:
            lines.append(
                f"  {worker['bot_name']:<17}{worker['status']}, {worker['jobs_done']} jobs done, "
                f"{worker['jobs_failed']} failed"
                + (f", last error: {worker['last_error']}" if worker.get("last_error") else "")
            )
    if traffic:
        lines.append(
            f"  traffic          {traffic['join_requests']} join requests ({traffic['bursts']} bursts) · "
            f"{traffic['messages']} member messages · {traffic['leaves']} members left · "
            f"{len(traffic['broadcasts'])} broadcasts posted"
        )
    if procs:
        children = procs.get("children", {})
        codes = ", ".join(f"{name} {_exit(info.get('exit_code'))}" for name, info in children.items())
        lines.append(f"  processes        {codes}; PostgreSQL {procs.get('postgres')}")
        for death in procs.get("died", []):
            lines.append(f"  DIED             {death}")
    for error in summary.get("errors", []):
        lines.append(f"  error            {error}")
    return "\n".join(lines)
