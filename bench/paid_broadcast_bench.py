"""Paid versus free broadcasts, side by side in one run, each against its own floor.

N managed groups (default 10,000); the simulator enforces Telegram's limits: 30 messages/s per bot,
and with `allow_paid_broadcast` up to 1000/s, billing 0.1 Star for each message beyond the free 30/s.
The same fleet gets two broadcasts from the same TGMS workers (default 3 processes):

- free: TGMS_RATE_PER_SECOND=30, no delay between groups. Floor N/30 s.
- paid: `"paid": true`, TGMS_PAID_RATE_PER_SECOND=1000. Floor N/1000 s.

Reported for each: wall time from the admin API request to the last message the simulator recorded,
its ratio to the floor, the achieved rate, 429s, duplicates and missing groups, and for the paid one the
Stars billed (against the composer's estimate, N × 0.1); then paid's speed-up over free.

Usage: ./dev.sh bench paid_broadcast_bench [--groups 10000] [--workers 3] [--only paid|free]
Uses TGMS_BENCH_DATABASE_URL when set, else a throwaway embedded PostgreSQL. The free broadcast alone
takes N/30 s (333 s for 10,000 groups).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_database

from telegram_sim.config import SimConfig
from tests.workers.harness import Stack
from tgms_tui.backend.paid_broadcasts import FREE_RATE, PAID_RATE, estimated_stars


@dataclass
class Run:
    name: str
    floor: float
    wall: float = 0.0
    first_to_last: float = 0.0
    sent: int = 0
    flooded: int = 0
    duplicates: int = 0
    missing: int = 0
    billed: int = 0
    status: str = ""


def broadcast(stack: Stack, groups: list[int], paid: bool) -> Run:
    rate = PAID_RATE if paid else FREE_RATE
    run = Run("paid" if paid else "free", len(groups) / rate)
    stack.ctl.clear_calls()
    stack.sim.state.flood.reset()
    billed_before = int(stack.ctl.stars(stack.tgms_bot_id)["billed_messages"])
    print(f"{run.name} broadcast to {len(groups)} groups (floor {run.floor:.1f} s) ...", file=sys.stderr)
    started = time.time()
    body: dict[str, object] = {"text": f"Benchmark *{run.name}* broadcast", "parse_mode": "Markdown"}
    if paid:
        body["paid"] = True
    broadcast_id = stack.broadcast(body)
    stack.wait_for(
        lambda: stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s AND status NOT IN "
                             "('pending', 'running')", (broadcast_id,)),
        timeout=run.floor * 4 + len(groups) / 10 + 120, what=f"{run.name} broadcast finished", interval=0.2,
    )  # fmt: skip
    sends = stack.calls("sendMessage")
    ok = [c for c in sends if c["ok"]]
    per_chat = Counter(int(c["chat_id"]) for c in ok)
    run.status = str(stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,)))
    run.sent = len(ok)
    run.flooded = sum(1 for c in sends if c["error_code"] == 429)
    run.duplicates = sum(1 for n in per_chat.values() if n > 1)
    run.missing = sum(1 for g in groups if per_chat.get(g, 0) == 0)
    last = max((float(c["at"]) for c in ok), default=started)
    run.wall = last - started
    run.first_to_last = last - min((float(c["at"]) for c in ok), default=started)
    run.billed = int(stack.ctl.stars(stack.tgms_bot_id)["billed_messages"]) - billed_before
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=3, help="TGMS worker processes (default 3)")
    parser.add_argument("--only", choices=["paid", "free"], help="run one side only (no ratio between them)")
    args = parser.parse_args()

    env = {"TGMS_RATE_PER_SECOND": str(FREE_RATE), "TGMS_PAID_RATE_PER_SECOND": str(PAID_RATE),
           "TGMS_GROUP_DELAY_SECONDS": "0", "TGMS_GROUP_MESSAGES_PER_MINUTE": "20"}  # fmt: skip
    config = SimConfig(enforce_flood_limits=True, per_bot_per_sec=FREE_RATE, paid_per_bot_per_sec=PAID_RATE,
                       max_recorded_calls=max(200_000, args.groups * 3))  # fmt: skip
    runs: list[Run] = []
    with (
        bench_database("bench_paid_broadcast") as url,
        tempfile.TemporaryDirectory() as tmp,
        Stack(url, Path(tmp), sim_config=config, env=env) as stack,
    ):
        print(f"starting {args.workers} TGMS workers, creating {args.groups} groups ...", file=sys.stderr)
        # Workers first: their start-up member-count run then has no group to read (10,000 would take
        # minutes), and the next one is an hour away.
        for _ in range(args.workers):
            stack.start_worker("tgms")
        stack.wait_jobs_idle(timeout=120)
        state = stack.sim.state
        chats = [state.create_chat("supergroup", f"Bench group {i}", bots=[stack.tgms_bot_id], members=3)
                 for i in range(args.groups)]  # fmt: skip
        groups = [c.id for c in chats]
        stack.sql("INSERT INTO managed_groups (group_id, title, chat_type, bot_can_invite) "
                  "SELECT g, t, 'supergroup', true FROM unnest(%s::bigint[], %s::text[]) AS u(g, t)",
                  (groups, [c.title for c in chats]))  # fmt: skip
        stack.ctl.set_stars(stack.tgms_bot_id, estimated_stars(args.groups) + 100)
        for side in ("paid", "free"):
            if args.only in (None, side):
                runs.append(broadcast(stack, groups, side == "paid"))

    print(f"\n{args.groups} groups, {args.workers} TGMS workers; simulator: free {FREE_RATE}/s, paid {PAID_RATE}/s")
    print(f"\n{'measure':<40}" + "".join(f"{r.name:>14}" for r in runs))
    print("-" * (40 + 14 * len(runs)))

    def row(label: str, values: list[str]) -> None:
        print(f"{label:<40}" + "".join(f"{v:>14}" for v in values))

    row("broadcast status", [r.status for r in runs])
    row("floor N/rate (s)", [f"{r.floor:.2f}" for r in runs])
    row("wall: API request -> last message (s)", [f"{r.wall:.2f}" for r in runs])
    row("  first -> last message (s)", [f"{r.first_to_last:.2f}" for r in runs])
    row("ratio wall / floor", [f"{r.wall / r.floor:.2f}" for r in runs])
    row("achieved rate (msg/s)", [f"{r.sent / r.wall if r.wall else 0:.1f}" for r in runs])
    row("429 answers", [str(r.flooded) for r in runs])
    row("duplicates (groups with > 1 copy)", [str(r.duplicates) for r in runs])
    row("missing (groups without a copy)", [str(r.missing) for r in runs])
    row("Stars billed (0.1 per billed message)", [f"{r.billed / 10:.1f}" for r in runs])
    row("composer's estimate (Stars, at most)", [f"{estimated_stars(args.groups) if r.name == 'paid' else 0:.1f}"
                                                 for r in runs])  # fmt: skip
    by_name = {r.name: r for r in runs}
    if len(by_name) == 2:
        free, fast = by_name["free"], by_name["paid"]
        print(f"\npaid is {free.wall / fast.wall:.1f}x faster than free (floors: {free.floor / fast.floor:.1f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
