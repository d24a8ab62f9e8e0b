"""Scenarios 17a and 17b: event webhooks under faults.

17a: a receiver that never answers (every attempt runs into TGMS_HOOKS_TIMEOUT) subscribed to every
join-request decision, over many groups, while join requests keep coming: approvals go on as before
and the hook drainers never take more than their share of the worker's job slots.

17b: TGMS workers SIGKILLed while deliveries are in flight (the receiver takes 200 ms per request): every
event still arrives (at least once) and each group's events arrive in the order they happened.
"""

from __future__ import annotations

import asyncio
import random
import signal
import threading
import time
from typing import Any

import psycopg
import pytest

from tests.support import percentile
from tests.workers.harness import Stack
from tgms_tui.backend import groups, hooks
from tgms_tui.demo.hook_receiver import HookReceiver

from .results import ScenarioFactory
from .world import StackFactory, managed_chats


def _subscribe(stack: Stack, url: str, events: list[str]) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        async with await psycopg.AsyncConnection.connect(stack.db_url) as conn:
            made = await hooks.add(conn, url, events, "test", allow_private=True)
            await conn.commit()
            return made

    return asyncio.run(go())


def _approval_latencies(stack: Stack, chats: list[int], count: int, rate: float) -> list[float]:
    """`count` join requests at `rate` over `chats`; seconds from each request to its approval."""
    made: dict[tuple[int, int], float] = {}
    for n in range(count):
        chat = chats[n % len(chats)]
        made_at = time.time()
        user = stack.sim.state.create_join_request(chat, None).user_id
        made[(chat, int(user))] = made_at
        time.sleep(1 / rate)

    def approved() -> dict[tuple[int, int], float]:
        calls = stack.calls("approveChatJoinRequest", ok=True)
        return {(int(c["chat_id"]), int(c["params"]["user_id"])): float(c["at"]) for c in calls}

    stack.wait_for(lambda: set(made) <= set(approved()), timeout=120, what="every request approved")
    done = approved()
    return [done[key] - at for key, at in made.items()]


@pytest.mark.slow
def test_a_dead_receiver_does_not_slow_approvals(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    concurrency, requests, rate, lanes = 2, 60, 10.0, 20
    rec = scenario(
        "17a", "Event webhook receiver that never answers",
        injected=f"a receiver that holds every request for 30 s, subscribed to join_request.decided over {lanes} "
        f"groups (one lane each); TGMS_HOOKS_TIMEOUT=2, TGMS_HOOKS_CONCURRENCY={concurrency}; {requests} join "
        f"requests at {rate:g}/s before and again after subscribing",
        checked="every request approved in both phases; requests open at the receiver at once never more than "
        "TGMS_HOOKS_CONCURRENCY (the receiver counts them; one ends when TGMS gives up on it); attempts recorded "
        "as timed out; approval latencies of both phases side by side",
    )  # fmt: skip
    env = {"TGMS_HOOKS_ALLOW_PRIVATE": "true", "TGMS_HOOKS_TIMEOUT": "2",
           "TGMS_HOOKS_CONCURRENCY": str(concurrency), "TGMS_WORKER_CONCURRENCY": "16"}  # fmt: skip
    stack: Stack = make_stack(db_url, env=env)
    stack.start_worker("tgms")
    chats = managed_chats(stack, lanes)
    stack.wait_jobs_idle()
    before = _approval_latencies(stack, chats, requests, rate)

    with HookReceiver() as receiver:
        receiver.delay = 30.0
        _subscribe(stack, receiver.url, ["join_request.decided"])
        peak, stop = [0], threading.Event()  # hook jobs marked running (informative)

        def sample() -> None:
            with psycopg.connect(stack.db_url, autocommit=True) as conn:
                while not stop.is_set():
                    row = conn.execute("SELECT count(*) FROM jobs WHERE job_type = %s AND status = 'running'",
                                       (hooks.JOB_TYPE,)).fetchone()  # fmt: skip
                    peak[0] = max(peak[0], int(row[0]) if row else 0)
                    time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            after = _approval_latencies(stack, chats, requests, rate)
        finally:
            stop.set()
            sampler.join(5)
        peak_open = receiver.peak_open
        timed_out = stack.scalar("SELECT count(*) FROM hook_attempts WHERE error LIKE 'timed out%%'")
        pending = stack.scalar("SELECT count(*) FROM hook_deliveries WHERE status IN ('pending', 'sending')")
    # The receiver's count of requests open at once (a request ends when TGMS gives up on it).
    assert 1 <= peak_open <= concurrency, peak_open
    assert timed_out >= 1
    rec.measure("approval p50 / p99 without hooks (ms)", f"{percentile(before, 0.5) * 1000:.0f} / "
                f"{percentile(before, 0.99) * 1000:.0f}")  # fmt: skip
    rec.measure("approval p50 / p99 with the dead receiver (ms)", f"{percentile(after, 0.5) * 1000:.0f} / "
                f"{percentile(after, 0.99) * 1000:.0f}")  # fmt: skip
    rec.measure("peak requests open at the receiver", peak_open)
    rec.measure("peak hook jobs marked running (incl. claimed only to snooze)", peak[0])
    rec.measure("attempts timed out", int(timed_out))
    rec.measure("deliveries still waiting", int(pending))


@pytest.mark.slow
def test_sigkilled_workers_deliver_every_event_in_order(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    lanes, rounds, kills, seed = 5, 6, 3, 17
    rec = scenario(
        "17b", "Worker SIGKILL during event webhook deliveries",
        injected=f"{kills} SIGKILLs of one of 2 `tgms worker` processes (random.Random({seed}): 0.5-1.5 s apart), "
        f"each restarted at once, while {lanes * rounds * 2} events over {lanes} groups are delivered to a "
        "receiver taking 200 ms per request; job lease 3 s, TGMS_HOOKS_TIMEOUT=1",
        checked="every event arrives with a valid signature (at least once); per group, first arrivals in the "
        "order the changes were committed; every delivery ends 'delivered'",
    )  # fmt: skip
    env = {"TGMS_HOOKS_ALLOW_PRIVATE": "true", "TGMS_HOOKS_TIMEOUT": "1", "TGMS_JOB_LEASE_SECONDS": "3"}
    stack: Stack = make_stack(db_url, env=env, webhook=False)
    chats = managed_chats(stack, lanes)
    with HookReceiver() as receiver:
        receiver.delay = 0.2
        sub_id, receiver.secret = _subscribe(stack, receiver.url, ["group.deactivated", "group.reactivated"])

        async def changes() -> None:
            async with await psycopg.AsyncConnection.connect(stack.db_url, autocommit=True) as conn:
                for n in range(rounds):
                    for chat in chats:
                        await groups.deactivate(conn, chat, f"round {n}")
                        await groups.reactivate(conn, chat)

        asyncio.run(changes())
        expected: dict[str, list[str]] = {}
        for event_id, lane in stack.sql("SELECT event_id::text, lane FROM hook_events ORDER BY seq"):
            expected.setdefault(str(lane), []).append(str(event_id))
        total = sum(len(v) for v in expected.values())
        assert total == lanes * rounds * 2

        workers = [stack.start_worker("tgms"), stack.start_worker("tgms")]
        rng = random.Random(seed)
        killed_in_flight = 0
        for _ in range(kills):
            time.sleep(rng.uniform(0.5, 1.5))
            killed_in_flight += int(stack.scalar("SELECT count(*) FROM hook_deliveries WHERE status = 'sending'"))
            i = rng.randrange(len(workers))
            workers[i].send_signal(signal.SIGKILL)
            workers[i].wait(10)
            workers[i] = stack.start_worker("tgms")

        def first_arrivals() -> dict[str, list[str]]:
            seen: dict[str, list[str]] = {}
            for r in receiver.accepted():
                event: dict[str, Any] = r.event()
                lane = str(event["data"]["group_id"])
                if event["id"] not in seen.setdefault(lane, []):
                    seen[lane].append(event["id"])
            return seen

        stack.wait_for(lambda: sum(len(v) for v in first_arrivals().values()) == total, timeout=180,
                       what="every event delivered")  # fmt: skip
        assert first_arrivals() == expected
        stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM hook_deliveries WHERE subscription_id = %s "
                                            "AND status <> 'delivered'", (sub_id,)) == 0,
                       timeout=60, what="every delivery recorded delivered")  # fmt: skip
        assert all(r.verified for r in receiver.accepted())
        duplicates = len(receiver.accepted()) - total
    rec.measure("events", total)
    rec.measure("kills", kills)
    rec.measure("deliveries in flight at the kills", killed_in_flight)
    rec.measure("duplicate arrivals (at least once)", duplicates)
