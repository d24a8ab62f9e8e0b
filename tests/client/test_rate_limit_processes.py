"""Done-when proof: three OS processes, each with its own connection pool, share one bot's rate
limit through PostgreSQL. The calls are counted from the simulator's own record (`/_sim/calls`,
server-side `at` timestamps), not from what the processes believe they did.

Bound used: a token bucket of capacity 1 admits at most `rate * T` calls in any half-open window of
T seconds; the check allows one more for the capacity burst / the jitter between a grant in the
database and its arrival at the simulator (as the issue's acceptance criterion states).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from telegram_sim.server import SimServer
from tests.support import max_in_window

REPO = Path(__file__).resolve().parents[2]


def run_processes(specs: list[dict[str, Any]], timeout: float = 120.0) -> list[dict[str, Any]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.client.limiter_child", json.dumps(spec)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    try:
        for proc in procs:  # all three connected and ready before any sends
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()


def all_competing(results: list[dict[str, Any]], calls: list[dict[str, Any]]) -> bool:
    """Every process was already asking for tokens before a third of the calls had been made, so
    the three really competed for one bucket (which process wins each token is not specified)."""
    third = sorted(c["at"] for c in calls)[len(calls) // 3]
    return len(results) == 3 and max(r["started"] for r in results) < third


@pytest.fixture
def sim() -> Any:
    with SimServer(bots=1, seed=5) as server:
        yield server


def test_three_processes_share_the_bot_rate(sim: SimServer, db_url: str) -> None:
    # 4/s rather than the seed's 5/s only to widen the token interval (250 ms) against scheduling
    # jitter on a loaded CI machine; the mechanism does not depend on the number.
    rate, per_process = 4.0, 8
    # Telegram's own flood limits stay on in the simulator: any overshoot would also show as 429s.
    chats = [int(sim.control.create_chat("supergroup")["id"]) for _ in range(3 * per_process)]
    specs = [
        {
            "name": f"p{i}",
            "db_url": db_url,
            "api_base": sim.base_url,
            "token": sim.token,
            "chats": chats[i * per_process : (i + 1) * per_process],
            "count": per_process,
            "limiter": {"rate_per_second": rate, "burst": 1},
        }
        for i in range(3)
    ]
    results = run_processes(specs)
    assert [r["errors"] for r in results] == [[], [], []]
    calls = sim.control.calls("sendMessage")
    assert len(calls) == 3 * per_process and all(c["ok"] for c in calls)
    assert all_competing(results, calls), "the three processes must have been sending at the same time"
    granted = {text: t for r in results for text, t in r["granted"].items()}
    # The limiter's guarantee, at grant time (database clock order, process wall clock): exact.
    assert max_in_window(list(granted.values()), 1.0) <= rate + 1
    # At the simulator, a request that was granted in time but delayed in transit (a stalled process
    # on a loaded 2-core machine) can land in a later window. Each such late arrival can add at most
    # one call to a window, so the record may exceed the bound only by the number of calls measured
    # to have spent more than 50 ms between grant and arrival.
    late = sum(1 for c in calls if c["at"] - granted[c["params"]["text"]] > 0.05)
    busiest = max_in_window([c["at"] for c in calls], 1.0)
    assert busiest <= rate + 1 + late, (
        f"{busiest} sendMessage calls within one second at the simulator (limit {rate:g}/s, "
        f"{late} late arrivals); {max_in_window(list(granted.values()), 1.0)} grants within one second"
    )


@pytest.mark.slow
def test_three_processes_share_a_group_limit(sim: SimServer, db_url: str) -> None:
    # Telegram's 20 messages per minute per group, scaled to 4 per 2 s so the test stays short; the
    # bot-wide rate is far above it, so only the group bucket can hold the senders back.
    limit, period = 4, 2.0
    sim.control.set_config(per_chat_per_sec=100.0, per_group_per_min=10_000.0)
    group = int(sim.control.create_chat("supergroup")["id"])
    specs = [
        {
            "name": f"p{i}",
            "db_url": db_url,
            "api_base": sim.base_url,
            "token": sim.token,
            "chats": [group],
            "count": 4,
            "limiter": {
                "rate_per_second": 50.0,
                "group_limit": limit,
                "group_period": period,
                "chat_min_interval": 0.05,
            },
        }
        for i in range(3)
    ]
    results = run_processes(specs)
    assert [r["errors"] for r in results] == [[], [], []]
    calls = sim.control.calls("sendMessage", chat_id=group)
    assert len(calls) == 12 and all(c["ok"] for c in calls)
    assert all_competing(results, calls)
    busiest = max_in_window([c["at"] for c in calls], period)
    assert busiest <= limit + 1, f"{busiest} messages to one group within {period:g} s (limit {limit})"
