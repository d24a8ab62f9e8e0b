"""Broadcast throughput against Telegram's real limits, shared by several TGMS workers.

1,000 managed groups; the simulator enforces Telegram's flood limits (30 messages/s per bot, 20 per
minute per group, ~1/s per chat with small bursts) and answers 429 beyond them. TGMS is configured at
TGMS_RATE_PER_SECOND=30 with no delay between groups, and 3 TGMS worker processes share the broadcast.

Reported: wall time from the admin API request to the last message recorded by the simulator, against
the limit N/rate (no sender can do better); the number of 429s; duplicates (a group with two copies)
and missing groups (a target without a copy). Baseline, side by side: the limit itself, and what the
seed's pacing (5 msg/s and 3 s between groups) would take for the same groups.

Usage: ./dev.sh bench broadcast_bench [--groups 1000] [--rate 30] [--workers 3]
Uses TGMS_BENCH_DATABASE_URL when set, else a throwaway embedded PostgreSQL. Targets: within 1.05x of
N/rate, zero 429s, zero duplicates, zero missing.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _fleet import add_fleet, fleet_parser, flood_limited_stack, sender_env, wait_broadcast

TARGET_RATIO = 1.05


def main() -> int:
    args = fleet_parser(__doc__, workers=3).parse_args()
    with flood_limited_stack("bench_broadcast", sender_env(args.rate)) as stack:
        groups = add_fleet(stack, args.groups, args.workers)
        print(f"broadcasting to {args.groups} groups at {args.rate:g}/s ...", file=sys.stderr)
        started = time.time()
        broadcast_id = stack.broadcast({"text": "Benchmark *broadcast*", "parse_mode": "Markdown"})
        wait_broadcast(stack, broadcast_id, timeout=args.groups / args.rate * 3 + 60)
        sends = stack.calls("sendMessage")
        status = stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,))
        outcomes = dict(stack.sql("SELECT status, count(*) FROM sent_messages WHERE broadcast_id = %s "
                                  "GROUP BY status", (broadcast_id,)))  # fmt: skip
        senders = stack.sql("SELECT count(DISTINCT locked_by) FROM sent_messages WHERE broadcast_id = %s",
                            (broadcast_id,))[0][0]  # fmt: skip

    ok = [c for c in sends if c["ok"]]
    per_chat = Counter(c["chat_id"] for c in ok)
    flooded = sum(1 for c in sends if c["error_code"] == 429)
    duplicates = sum(1 for n in per_chat.values() if n > 1)
    missing = sum(1 for chat in groups if per_chat.get(chat, 0) == 0)
    last = max(c["at"] for c in ok) if ok else started
    first = min(c["at"] for c in ok) if ok else started
    wall = last - started
    limit = args.groups / args.rate
    seed_pacing = args.groups * 3.0  # 3 s between groups dominates 5 msg/s

    print(f"\nbroadcast {broadcast_id}: {status}; rows {outcomes}; {senders} sender worker(s) took part")
    print(f"\n{'measure':<48} {'value':>14}")
    print("-" * 64)
    print(f"{'groups targeted':<48} {args.groups:>14}")
    print(f"{'wall time: API request -> last message (s)':<48} {wall:>14.2f}")
    print(f"{'  first -> last message (s)':<48} {last - first:>14.2f}")
    print(f"{'limit N/rate (s)':<48} {limit:>14.2f}")
    print(f"{'ratio wall / limit':<48} {wall / limit:>14.3f}")
    print(f"{'achieved rate (msg/s)':<48} {len(ok) / wall if wall else 0:>14.2f}")
    print(f"{'429 answers':<48} {flooded:>14}")
    print(f"{'duplicates (groups with > 1 copy)':<48} {duplicates:>14}")
    print(f"{'missing (groups without a copy)':<48} {missing:>14}")
    print(f"{'baseline: seed pacing (3 s/group) would take (s)':<48} {seed_pacing:>14.0f}")
    met = wall / limit <= TARGET_RATIO and flooded == 0 and duplicates == 0 and missing == 0
    print(f"\ntarget within {TARGET_RATIO}x of N/rate, 0 x 429, 0 duplicates, 0 missing: {'MET' if met else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
