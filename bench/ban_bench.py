"""A fleet ban across many groups against the floor Telegram's limits set.

1,000 managed supergroups (the TGMS bot an administrator in each), the simulator enforcing Telegram's
flood limits. `POST /api/tgms/bans` puts one user on the ban list; the TGMS worker applies
banChatMember in every group through the bot's shared rate bucket at TGMS_RATE_PER_SECOND (30/s, the
bot-wide rate Telegram tolerates). No client can ban faster than the bucket lets calls out, so the
floor is N / rate.

Reported: wall time from the API request to the simulator's record of the last banChatMember, the
ratio to the floor, 429 answers, groups banned twice (a repeat is harmless: the call is idempotent)
and groups missed; and, side by side, the same N/rate floor and what a sequential one-call-at-a-time
client with the measured per-call latency and no pacing would need.

Usage: ./dev.sh bench ban_bench [--groups 1000] [--rate 30] [--workers 1]
Uses TGMS_BENCH_DATABASE_URL when set, else a throwaway embedded PostgreSQL. Targets: within 1.05x of
the floor, zero 429s, every group banned.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _fleet import add_fleet, fleet_parser, flood_limited_stack

from tests.workers.harness import ADMIN_KEY

TARGET_RATIO = 1.05


def main() -> int:
    args = fleet_parser(__doc__, workers=1).parse_args()
    env = {"TGMS_RATE_PER_SECOND": str(args.rate), "TGMS_LOG_LEVEL": "WARNING"}
    with flood_limited_stack("bench_ban", env) as stack:
        state = stack.sim.state
        user = state.create_user("Raider").id
        groups = add_fleet(stack, args.groups, args.workers, members=[user])
        time.sleep(1.0)  # the bot's bucket full again, as before any ban

        print(f"banning in {args.groups} groups at {args.rate:g}/s ...", file=sys.stderr)
        assert stack.webhook_url is not None
        started = time.time()
        response = httpx.post(f"{stack.webhook_url}/api/tgms/bans", headers={"x-api-key": ADMIN_KEY},
                              json={"user_id": user, "reason": "benchmark"}, timeout=30)  # fmt: skip
        response.raise_for_status()
        ban_id = response.json()["ban_id"]
        stack.wait_for(
            lambda: stack.scalar("SELECT count(*) FROM fleet_ban_groups WHERE ban_id = %s "
                                 "AND status IN ('pending', 'applying')", (ban_id,)) == 0,
            timeout=args.groups / args.rate * 3 + 60, what="ban applied", interval=0.2,
        )  # fmt: skip
        calls = stack.calls("banChatMember")
        outcomes = dict(stack.sql("SELECT status, count(*) FROM fleet_ban_groups WHERE ban_id = %s "
                                  "GROUP BY status", (ban_id,)))  # fmt: skip
        banned = sum(1 for chat in groups if state.member_of(state.chats[chat], user).status == "kicked")

    ok = [c for c in calls if c["ok"]]
    per_chat = Counter(c["chat_id"] for c in ok)
    flooded = sum(1 for c in calls if c["error_code"] == 429)
    repeats = sum(1 for n in per_chat.values() if n > 1)
    missing = args.groups - banned
    last = max(c["at"] for c in ok) if ok else started
    first = min(c["at"] for c in ok) if ok else started
    wall = last - started
    floor = args.groups / args.rate

    print(f"\nban {ban_id}: rows {outcomes}")
    print(f"\n{'measure':<52} {'value':>12}")
    print("-" * 65)
    print(f"{'groups':<52} {args.groups:>12}")
    print(f"{'wall time: API request -> last banChatMember (s)':<52} {wall:>12.2f}")
    print(f"{'  first -> last banChatMember (s)':<52} {last - first:>12.2f}")
    print(f"{'floor N/rate (s)':<52} {floor:>12.2f}")
    print(f"{'ratio wall / floor':<52} {wall / floor:>12.3f}")
    print(f"{'achieved rate (bans/s)':<52} {len(ok) / wall if wall else 0:>12.2f}")
    print(f"{'429 answers':<52} {flooded:>12}")
    print(f"{'groups banned twice (harmless, idempotent)':<52} {repeats:>12}")
    print(f"{'groups where the user is not banned':<52} {missing:>12}")
    met = wall / floor <= TARGET_RATIO and flooded == 0 and missing == 0
    print(f"\ntarget within {TARGET_RATIO}x of N/rate, 0 x 429, every group banned: {'MET' if met else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
