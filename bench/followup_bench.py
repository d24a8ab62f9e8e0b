"""Follow-ups on a 1,000-group broadcast against Telegram's limits: edit every copy, then retract them.

1,000 managed groups; the simulator enforces Telegram's flood limits (30 calls/s per bot, 20 per
minute per group, ~1/s per chat with small bursts) on sends *and* on edits and deletions, answering
429 beyond them. TGMS runs at TGMS_RATE_PER_SECOND=30 with 3 TGMS worker processes. The broadcast is
sent first (the named baseline: the sender making the same number of calls under the same limits),
then an edit of every copy and a retract of every copy are requested through the admin API.

Reported, side by side for the send (baseline), the edit and the retract: wall time from the admin API
request to the last successful call recorded by the simulator, against the floor N/rate (no client
can do better under the simulator's 30/s); the ratio; 429 answers; groups touched twice (a second
successful call for one group) and groups missed.

Usage: ./dev.sh bench followup_bench [--groups 1000] [--rate 30] [--workers 3]
Uses TGMS_BENCH_DATABASE_URL when set, else a throwaway embedded PostgreSQL. Targets: within 1.05x of
the floor, zero 429s, no group touched twice, none missed.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _fleet import add_fleet, fleet_parser, flood_limited_stack, sender_env, wait_broadcast

from tests.workers.harness import ADMIN_KEY, Stack

TARGET_RATIO = 1.05


def _measure(stack: Stack, method: str, started: float, groups: list[int]) -> dict[str, Any]:
    calls = stack.calls(method)
    ok = [c for c in calls if c["ok"]]
    per_chat = Counter(int(c["chat_id"]) for c in ok)
    last = max((c["at"] for c in ok), default=started)
    return {
        "wall": last - started,
        "calls": len(ok),
        "429": sum(1 for c in calls if c["error_code"] == 429),
        "twice": sum(1 for n in per_chat.values() if n > 1),
        "missed": sum(1 for g in groups if not per_chat.get(g)),
    }


def _followup(stack: Stack, broadcast_id: int, action: str, body: dict[str, Any], timeout: float) -> int:
    assert stack.webhook_url is not None
    answer = httpx.post(f"{stack.webhook_url}/api/tgms/broadcasts/{broadcast_id}/{action}", json=body,
                        headers={"x-api-key": ADMIN_KEY}, timeout=10)  # fmt: skip
    assert answer.status_code == 200, answer.text
    followup_id = int(answer.json()["followup_id"])
    stack.wait_for(
        lambda: stack.scalar("SELECT j.status FROM jobs j JOIN broadcast_followups f ON f.job_id = j.job_id "
                             "WHERE f.followup_id = %s AND j.status IN ('done', 'failed')", (followup_id,)),
        timeout=timeout, what=f"{action} finished", interval=0.2,
    )  # fmt: skip
    return followup_id


def main() -> int:
    args = fleet_parser(__doc__, workers=3).parse_args()
    timeout = args.groups / args.rate * 3 + 60
    results: dict[str, dict[str, Any]] = {}
    outcomes: dict[str, dict[str, int]] = {}
    with flood_limited_stack("bench_followup", sender_env(args.rate)) as stack:
        groups = add_fleet(stack, args.groups, args.workers)
        print(f"send (baseline): {args.groups} groups at {args.rate:g}/s ...", file=sys.stderr)
        started = time.time()
        broadcast_id = stack.broadcast({"text": "Benchmark *broadcast*", "parse_mode": "Markdown"})
        wait_broadcast(stack, broadcast_id, timeout)
        results["send (baseline)"] = _measure(stack, "sendMessage", started, groups)
        for action, method, body in (
            ("edit", "editMessageText", {"text": "Benchmark *broadcast*, edited"}),
            ("retract", "deleteMessages", {}),
        ):
            time.sleep(2.0)  # the bot's bucket refills (at most a second's worth), as between broadcasts
            print(f"{action}: {args.groups} copies ...", file=sys.stderr)
            started = time.time()
            followup_id = _followup(stack, broadcast_id, action, body, timeout)
            results[action] = _measure(stack, method, started, groups)
            outcomes[action] = dict(stack.sql("SELECT status, count(*) FROM broadcast_followup_groups WHERE "
                                              "followup_id = %s GROUP BY status", (followup_id,)))  # fmt: skip

    floor = args.groups / args.rate
    print(f"\n{args.groups} groups, TGMS_RATE_PER_SECOND={args.rate:g}, {args.workers} workers; floor N/rate = "
          f"{floor:.2f} s for each; follow-up rows: {outcomes}")  # fmt: skip
    print(f"\n{'':<18} {'wall (s)':>9} {'ratio':>7} {'calls':>6} {'429':>5} {'twice':>6} {'missed':>7}")
    print("-" * 62)
    met = True
    for name, r in results.items():
        ratio = r["wall"] / floor
        print(f"{name:<18} {r['wall']:>9.2f} {ratio:>7.3f} {r['calls']:>6} {r['429']:>5} {r['twice']:>6} "
              f"{r['missed']:>7}")  # fmt: skip
        if name != "send (baseline)":
            met = met and ratio <= TARGET_RATIO and r["429"] == 0 and r["twice"] == 0 and r["missed"] == 0
    base = results["send (baseline)"]["wall"]
    print(
        f"\nvs the sender: edit {results['edit']['wall'] / base:.3f}x, retract {results['retract']['wall'] / base:.3f}x"
    )
    print(f"target within {TARGET_RATIO}x of N/rate, 0 x 429, no group touched twice, none missed: "
          f"{'MET' if met else 'NOT MET'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
