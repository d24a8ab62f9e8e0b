"""The join gate against the `auto` path, in the same run on the same processes, then a raid.

Phase 1 (latency): join requests at `--rate` per second into `verify` groups, interleaved with as many
into `auto` groups (the baseline: today's path). Measured, all on the simulator's clock:
- auto: update delivery start → approveChatJoinRequest recorded;
- verify, request → DM: update delivery start → the verification sendMessage recorded;
- verify, press → approved: the simulated press (callback_query queued) → approveChatJoinRequest
  recorded. Presses are made at `--rate` per second once the messages are out.
Target: p99 <= 50 ms for each.

Phase 2 (raid): `--raid-requests` requests over `--raid-seconds` into `--raid-groups` groups whose
threshold is `--threshold` per minute. Checked: approvals per group before the hold (<= threshold),
approvals after the hold began (0), every held request listed by the queue (join_gate.list_requests);
then the bulk decline of all held requests (one `decline --group` per group, as an operator would) at
the bot's rate (TGMS_RATE_PER_SECOND) against its floor (held / rate), timed from the first decision
queued to the last decline Telegram answered; and exactly once: one decline Telegram carried out per
held request, every held row 'declined'. The raid starts where it fits in one calendar minute (the
counts are per minute), waiting for the next one if need be.

Usage: ./dev.sh bench join_gate_bench [--rate 50] [--seconds 10] [--raid-requests 5000] [--raid-seconds 10]
Uses TGMS_BENCH_DATABASE_URL when set, else a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_database

from telegram_sim.config import SimConfig
from tests.support import percentile
from tests.workers.harness import Stack
from tgms_tui.backend import join_gate

TARGET_P99_MS = 50.0


def drive(stack: Stack, plan: list[int], rate: float) -> list[tuple[int, int]]:
    state = stack.sim.state
    made = []
    start = time.perf_counter()
    for i, chat in enumerate(plan):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        made.append((chat, state.create_join_request(chat, None).user_id))
    return made


def delivery_starts(stack: Stack) -> dict[tuple[int, int], float]:
    """(chat, user) → when the simulator started delivering its chat_join_request."""
    rows = stack.sql(
        "SELECT (payload->>'update_id')::bigint, (payload->'update'->'chat_join_request'->'chat'->>'id')::bigint, "
        "(payload->'update'->'chat_join_request'->'from'->>'id')::bigint FROM jobs "
        "WHERE job_type = 'tgms_process_join_request'"
    )
    key_of = {uid: (c, u) for uid, c, u in rows}
    out = {}
    for a in stack.sim.dispatcher.recent_attempts(stack.tgms_bot_id, 10**9):
        if a["kind"] == "chat_join_request" and a["ok"] and a["update_id"] in key_of:
            out[key_of[a["update_id"]]] = a["at"] - a["latency_ms"] / 1000.0
    return out


def stats(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    if not ms:
        return f"{name:<40} {0:>6}"
    return (f"{name:<40} {len(ms):>6} {percentile(ms, 0.5):>8.1f} {percentile(ms, 0.9):>8.1f} "
            f"{percentile(ms, 0.99):>8.1f} {max(ms):>8.1f}")  # fmt: skip


def latency_phase(stack: Stack, args: argparse.Namespace) -> bool:
    auto = [stack.add_group(stack.ctl.create_chat("supergroup", f"Auto {i}", bots=[stack.tgms_bot_id]))
            for i in range(5)]  # fmt: skip
    verify = [
        stack.add_group(
            stack.ctl.create_chat("supergroup", f"Verify {i}", bots=[stack.tgms_bot_id]),
            join_policy="verify",
            verify_timeout_seconds=600,
        )
        for i in range(5)
    ]
    n = int(args.rate * args.seconds)
    plan = [x for i in range(n) for x in (verify[i % 5], auto[i % 5])]
    drive(stack, plan[:40], args.rate * 2)  # warm-up
    stack.wait_jobs_idle("tgms_process_join_request", timeout=60)
    print(f"[latency] {n} verify + {n} auto requests at {args.rate:.0f}/s each ...", file=sys.stderr)
    t0 = time.perf_counter()
    made = drive(stack, plan[40:] if len(plan) > 80 else plan, args.rate * 2)
    achieved = len(made) / (time.perf_counter() - t0)
    verify_set = set(verify)
    made_verify = [k for k in made if k[0] in verify_set]
    made_auto = [k for k in made if k[0] not in verify_set]
    stack.wait_jobs_idle("tgms_process_join_request", timeout=120)
    starts = delivery_starts(stack)
    approved = {(c["chat_id"], int(c["params"]["user_id"])): c["at"]
                for c in stack.calls("approveChatJoinRequest", ok=True)}  # fmt: skip
    dms = {int(c["chat_id"]): c for c in stack.calls("sendMessage", ok=True) if int(c["chat_id"]) > 0}
    auto_lat = [approved[k] - starts[k] for k in made_auto if k in approved and k in starts]
    dm_lat = [dms[u]["at"] - starts[(c, u)] for c, u in made_verify if u in dms and (c, u) in starts]
    # Press every verification button at the same rate.
    state = stack.sim.state
    pressed: dict[tuple[int, int], float] = {}
    start = time.perf_counter()
    for i, (chat, user) in enumerate(made_verify):
        delay = start + i / args.rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        with state.lock:
            stored = [m for m in state.messages.get(user, []) if m.sent_by_bot and m.data.get("reply_markup")]
        if not stored:
            continue
        message = stored[-1]
        data = message.data["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        query = state.press_button(user, user, message.message_id, data)
        pressed[(chat, user)] = query.at
    users = [u for _c, u in pressed]
    stack.wait_for(
        lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'verifying' AND user_id = ANY(%s)",
                             (users,)) == 0,
        timeout=120, what="every press handled",
    )  # fmt: skip
    approved = {(c["chat_id"], int(c["params"]["user_id"])): c["at"]
                for c in stack.calls("approveChatJoinRequest", ok=True)}  # fmt: skip
    press_lat = [approved[k] - t for k, t in pressed.items() if k in approved]
    print(f"\n== latency: {len(made_verify)} verify + {len(made_auto)} auto requests, {achieved:.1f}/s in all")
    print(f"{'latency (ms)':<40} {'n':>6} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    print(stats("auto: request -> approved (baseline)", auto_lat))
    print(stats("verify: request -> DM sent", dm_lat))
    print(stats("verify: press -> approved", press_lat))
    ok = True
    for name, values in (("request -> DM", dm_lat), ("press -> approved", press_lat)):
        p99 = percentile([v * 1000 for v in values], 0.99) if values else float("inf")
        base = percentile([v * 1000 for v in auto_lat], 0.99) if auto_lat else float("nan")
        met = p99 <= TARGET_P99_MS
        ok &= met
        print(f"[latency] {name}: p99 {p99:.1f} ms (auto p99 {base:.1f} ms, {p99 / base:.2f}x): "
              f"target <= {TARGET_P99_MS:.0f} ms {'MET' if met else 'NOT MET'}")  # fmt: skip
    return ok


def raid_phase(stack: Stack, args: argparse.Namespace, rate_per_second: float) -> bool:
    groups = [
        stack.add_group(
            stack.ctl.create_chat("supergroup", f"Raid {i}", bots=[stack.tgms_bot_id]), raid_per_minute=args.threshold
        )
        for i in range(args.raid_groups)
    ]
    plan = [groups[i % len(groups)] for i in range(args.raid_requests)]
    # Counts are per calendar minute: a raid straddling a minute's end may let up to twice the
    # threshold through (documented). Start it where it fits in one minute, to check exactness.
    into_minute = float(stack.scalar("SELECT extract(epoch FROM now() - date_trunc('minute', now()))"))
    if args.raid_seconds + 5 < 60 and into_minute > 60 - args.raid_seconds - 5:
        print(f"[raid] waiting {60.5 - into_minute:.0f} s for a fresh minute ...", file=sys.stderr)
        time.sleep(60.5 - into_minute)
    print(f"[raid] {len(plan)} requests over {args.raid_seconds:.0f} s into {len(groups)} groups ...", file=sys.stderr)
    t0 = time.perf_counter()
    drive(stack, plan, len(plan) / args.raid_seconds)
    achieved = len(plan) / (time.perf_counter() - t0)
    stack.wait_for(
        lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE chat_id = ANY(%s) AND status IN "
                             "('approved', 'held')", (groups,)) >= len(plan),
        timeout=300, what="every raid request handled",
    )  # fmt: skip
    per_group = stack.sql(
        "SELECT j.chat_id, count(*) FILTER (WHERE j.status = 'approved'), count(*) FILTER (WHERE j.status = 'held'), "
        "count(*) FILTER (WHERE j.status = 'approved' AND j.processed_at > g.held_since) "
        "FROM join_requests j JOIN managed_groups g ON g.group_id = j.chat_id WHERE j.chat_id = ANY(%s) "
        "GROUP BY j.chat_id",
        (groups,),
    )
    # The per-group count is exact (the counter row is locked per request), so an approval beyond the
    # threshold is one whose verdict came after the hold.
    approved_before = [min(r[1], args.threshold) for r in per_group]
    after = sum(max(0, r[1] - args.threshold) for r in per_group)
    counted = dict(stack.sql("SELECT chat_id, sum(requests) FROM join_request_rates WHERE chat_id = ANY(%s) "
                             "GROUP BY chat_id", (groups,)))  # fmt: skip
    retried = stack.scalar("SELECT count(*) FROM jobs WHERE job_type = 'tgms_process_join_request' AND retries > 0")
    print(
        f"per group (approved, held, counted): {[(r[1], r[2], counted.get(r[0])) for r in per_group]}; "
        f"jobs retried: {retried}",
        file=sys.stderr,
    )
    held = sum(r[2] for r in per_group)

    async def listed_and_decide() -> tuple[int, float]:
        async with await psycopg.AsyncConnection.connect(stack.db_url, autocommit=True) as conn:
            rows = await join_gate.list_requests(conn, ("held",), None, limit=100_000)
            listed = sum(1 for r in rows if r.chat_id in set(groups))
            if not args.bulk:
                return listed, 0.0
            started = time.time()  # the simulator's clock: the last decline is read from its call log
            for group in groups:
                await join_gate.request_decisions(conn, "decline", by="bench", group_id=group)
        stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'held'") == 0,
                       timeout=held / rate_per_second * 3 + 60, what="bulk decline done")  # fmt: skip
        # Until the last declineChatJoinRequest Telegram answered, not until a later poll saw it.
        last = max(c["at"] for c in stack.calls("declineChatJoinRequest", ok=True))
        return listed, last - started

    listed, bulk_seconds = asyncio.run(listed_and_decide())
    print(f"\n== raid: {len(plan)} requests at {achieved:.0f}/s into {len(groups)} groups, threshold "
          f"{args.threshold}/min")  # fmt: skip
    print(f"approved per group before the hold: min {min(approved_before)}, max {max(approved_before)} "
          f"(target <= {args.threshold}); approved after the hold began: {after} (target 0)")  # fmt: skip
    print(f"held: {held}; listed by the queue: {listed} (target: all)")
    ok = max(approved_before) <= args.threshold and after == 0 and listed == held
    if args.bulk:
        floor = held / rate_per_second
        print(f"bulk decline of {held} held requests: {bulk_seconds:.1f} s; floor at {rate_per_second:.0f}/s "
              f"{floor:.1f} s; ratio {bulk_seconds / floor:.3f} (target <= 1.05)")  # fmt: skip
        # Exactly once: one declineChatJoinRequest Telegram carried out per held request, none more,
        # every held row declined; and never faster than the bot's rate (a 1-second window holds at
        # most the rate plus the bucket's burst).
        calls: dict[tuple[int, int], int] = {}
        times = []
        for c in stack.calls("declineChatJoinRequest", ok=True):
            key = (int(c["chat_id"]), int(c["params"]["user_id"]))
            calls[key] = calls.get(key, 0) + 1
            times.append(c["at"])
        statuses = dict(stack.sql("SELECT status, count(*) FROM join_requests WHERE chat_id = ANY(%s) AND "
                                  "status <> 'approved' GROUP BY status", (groups,)))  # fmt: skip
        times.sort()
        busiest = max(bisect.bisect_right(times, t + 1.0) - i for i, t in enumerate(times))
        first = times[0]
        per_second = [0] * (int(times[-1] - first) + 1)
        for t in times:
            per_second[int(t - first)] += 1
        print(f"declines per second from the first: {per_second}", file=sys.stderr)
        once = len(calls) == held and set(calls.values()) == {1} and statuses == {"declined": held}
        print(f"declined once each: {'yes' if once else 'NO'} ({len(calls)} requests, {sum(calls.values())} calls, "
              f"rows {statuses}); busiest second: {busiest} calls (rate {rate_per_second:.0f}/s)")  # fmt: skip
        ok = ok and bulk_seconds / floor <= 1.05 and once
    print(f"[raid] {'MET' if ok else 'NOT MET'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0, help="verify requests per second (and as many auto)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--raid-requests", type=int, default=5000)
    parser.add_argument("--raid-seconds", type=float, default=10.0)
    parser.add_argument("--raid-groups", type=int, default=10)
    parser.add_argument("--threshold", type=int, default=20)
    parser.add_argument("--bot-rate", type=float, default=200.0, help="TGMS_RATE_PER_SECOND (bulk decisions' pace)")
    parser.add_argument("--no-bulk", dest="bulk", action="store_false", help="skip the bulk decline")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    ok = True
    with bench_database("bench_join_gate") as url, tempfile.TemporaryDirectory() as tmp:
        env: dict[str, Any] = {"TGMS_RATE_PER_SECOND": str(args.bot_rate), "TGMS_LOG_LEVEL": "WARNING"}
        stack = Stack(url, Path(tmp), sim_config=SimConfig(enforce_flood_limits=False), env=env)
        with stack:
            for _ in range(args.workers):
                stack.start_worker("tgms")
            stack.start_worker("main")
            if not args.skip_latency:
                ok &= latency_phase(stack, args)
            ok &= raid_phase(stack, args, args.bot_rate)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
