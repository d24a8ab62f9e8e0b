"""Event-webhook delivery latency at a steady event rate, against a plain HTTP POST loop.

TGMS: this process writes member counts (`members.record_count`, the member-count job's own
statement) at `--rate` per second over `--groups` groups; each commit's trigger records a
group.member_count event and its delivery; a real TGMS worker (`python -m workers.tgms_worker`
as a subprocess) drains each group's lane and POSTs the signed event to a local receiver.
Latency = arrival at the receiver − the commit of the change (one clock: this process's time.time()).

Baseline, side by side in the same run and to the same receiver: a plain httpx POST loop (no
database, no queue, no signature) at the same rate; latency = arrival − the moment the POST started.
The ratio says what outbox + queue + signing + ordering cost over the bare HTTP call.

Usage: ./dev.sh bench hooks_bench [--rate 100] [--seconds 10] [--groups 20]
Uses TGMS_BENCH_DATABASE_URL when set, else a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_database

from tests.support import percentile
from tests.workers.harness import Stack
from tgms_tui.backend import hooks, members
from tgms_tui.demo.hook_receiver import HookReceiver


async def drive_events(url: str, groups: list[int], rate: float, seconds: float) -> dict[tuple[int, int], float]:
    """Member-count changes at a steady rate (absolute schedule: no drift); (group, count) -> commit time."""
    committed: dict[tuple[int, int], float] = {}
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        for n in range(total):
            due = start + n / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            group, count = groups[n % len(groups)], 1000 + n
            await members.record_count(conn, group, count)
            committed[(group, count)] = time.time()
    return committed


async def plain_posts(url: str, rate: float, seconds: float) -> dict[int, float]:
    """The baseline: one POST per event at the same rate, each in its own task (as lanes overlap)."""
    sent: dict[int, float] = {}
    total = int(rate * seconds)
    start = time.perf_counter() + 0.2
    async with httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=200)) as client:

        async def post(n: int) -> None:
            sent[n] = time.time()
            try:
                await client.post(url, content=json.dumps({"n": n}).encode(), headers={"X-TGMS-Event": "baseline"})
            except httpx.HTTPError as exc:  # counted as missing in the baseline's figures
                print(f"  baseline POST {n} failed: {type(exc).__name__}", file=sys.stderr)

        tasks = []
        for n in range(total):
            due = start + n / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(post(n)))
        await asyncio.gather(*tasks)
    return sent


def summary(name: str, latencies_ms: list[float], expected: int) -> tuple[float, float]:
    p50, p99 = percentile(latencies_ms, 0.5), percentile(latencies_ms, 0.99)
    print(f"  {name:<44} {len(latencies_ms):>5}/{expected:<5} p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   "
          f"max {max(latencies_ms):7.1f} ms")  # fmt: skip
    return p50, p99


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0, help="events per second (default 100)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send (default 10)")
    parser.add_argument("--groups", type=int, default=20, help="groups, i.e. ordered lanes (default 20)")
    args = parser.parse_args()
    expected = int(args.rate * args.seconds)
    groups = [-1_009_000_000 - n for n in range(args.groups)]

    with bench_database("tgms_hooks_bench") as url, tempfile.TemporaryDirectory() as tmp, HookReceiver() as receiver:
        with psycopg.connect(url, autocommit=True) as conn:
            for g in groups:
                conn.execute("INSERT INTO managed_groups (group_id, title, member_count) VALUES (%s, 'bench', 1)", (g,))

        async def subscribe() -> None:
            async with await psycopg.AsyncConnection.connect(url) as conn:
                await hooks.add(conn, receiver.url, ["group.member_count"], "bench", allow_private=True)
                await conn.commit()

        asyncio.run(subscribe())
        with Stack(url, Path(tmp), webhook=False) as stack:
            stack.start_worker("tgms", TGMS_HOOKS_ALLOW_PRIVATE="true", TGMS_LOG_LEVEL="WARNING")
            time.sleep(2.0)  # the worker's start (its first periodic jobs) is not what is measured
            # One delivery first: it opens the worker's autocommit pool and HTTP client (once per process).
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("UPDATE managed_groups SET member_count = 2 WHERE group_id = %s", (groups[0],))
            while not receiver.accepted():
                time.sleep(0.05)
            warmup = len(receiver.accepted())
            print(f"hooks_bench: {args.rate:g} events/s for {args.seconds:g} s over {args.groups} lanes")
            committed = asyncio.run(drive_events(url, groups, args.rate, args.seconds))
            deadline = time.time() + 60
            while len(receiver.accepted()) < expected + warmup and time.time() < deadline:
                time.sleep(0.1)
            with psycopg.connect(url, autocommit=True) as conn:
                breakdown = conn.execute(
                    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY"
                    "       EXTRACT(EPOCH FROM first_attempt_at - created_at)),"
                    " percentile_cont(0.5) WITHIN GROUP (ORDER BY last_latency_ms),"
                    " percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM delivered_at - first_attempt_at)),"
                    " max(attempts), (SELECT count(*) FROM jobs WHERE job_type = %s)"
                    " FROM hook_deliveries",
                    (hooks.JOB_TYPE,),
                ).fetchone()
        arrived: dict[tuple[int, int], float] = {}
        for r in receiver.accepted()[warmup:]:
            data = r.event()["data"]
            arrived.setdefault((data["group_id"], data["member_count"]), r.at)
        tgms = [(arrived[k] - t) * 1000 for k, t in committed.items() if k in arrived]

        before = len(receiver.received)
        sent = asyncio.run(plain_posts(receiver.url, args.rate, args.seconds))
        baseline_arrivals = {r.event()["n"]: r.at for r in receiver.received[before:]}
        plain = [(baseline_arrivals[n] - t) * 1000 for n, t in sent.items() if n in baseline_arrivals]

    print(f"\n  {'':<44} {'got':>11}")
    t50, t99 = summary("TGMS hooks (commit → signed POST arrives)", tgms, expected)
    b50, b99 = summary("baseline: plain httpx POST loop", plain, expected)
    print(f"\n  ratio TGMS / baseline: p50 {t50 / b50:.1f}x, p99 {t99 / b99:.1f}x")
    per_lane: dict[int, list[int]] = {}
    for r in receiver.accepted():
        if r.event_type == "group.member_count" and r.event()["data"]["member_count"] >= 1000:
            data = r.event()["data"]
            per_lane.setdefault(data["group_id"], []).append(data["member_count"])
    ordered = all(counts == sorted(counts) for counts in per_lane.values())
    if breakdown:
        print(f"  TGMS p50s: commit → attempt starts {float(breakdown[0]) * 1000:.1f} ms; the POST itself "
              f"{float(breakdown[1]):.1f} ms; attempt start → recorded delivered {float(breakdown[2]) * 1000:.1f} ms;"
              f" max attempts {breakdown[3]}; {breakdown[4]} drainer jobs for {expected} events")  # fmt: skip
    print(f"  every lane in order: {'yes' if ordered else 'NO'}; delivered {len(tgms)} of {expected}")
    return 0 if len(tgms) == expected and ordered else 1


if __name__ == "__main__":
    sys.exit(main())
