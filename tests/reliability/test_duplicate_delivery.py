"""Scenario 7: every update delivered twice at the same instant to two webhook server processes, again
by Telegram (the simulator), and once more after its job finished: one job per update, every action
taken once.

Telegram redelivers whenever it did not see a 2xx in time, so duplicates are normal traffic: they must
be acknowledged with 200 (or Telegram retries them for a day) and must never make a second job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re

import httpx
import pytest

from tests.workers.harness import ALLOWED_UPDATES, WEBHOOK_SECRET, Stack

from .oracle import per_request
from .results import ScenarioFactory
from .world import StackFactory, add_groups, tgms_chats

APPROVE = "approveChatJoinRequest"
REQUESTS_PER_GROUP = 5


HEADERS = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET, "Content-Type": "application/json"}


def _post_all(url: str, bodies: list[bytes]) -> list[int]:
    """POST every body concurrently (as Telegram does over its connections); the status codes."""
    with httpx.Client(timeout=30) as client, concurrent.futures.ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda body: client.post(url, content=body, headers=HEADERS).status_code, bodies))


def _race(urls: tuple[str, str], bodies: list[bytes]) -> list[int]:
    """Each body to both URLs at the same instant (both requests written before either answer is read),
    on warmed-up connections; the status codes."""

    async def run() -> list[int]:
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
            await asyncio.gather(*(client.get(u.rsplit("/api/", 1)[0] + "/healthz") for u in urls for _ in range(8)))
            gate = asyncio.Semaphore(8)

            async def pair(body: bytes) -> list[int]:
                async with gate:
                    answers = await asyncio.gather(*(client.post(u, content=body, headers=HEADERS) for u in urls))
                    return [r.status_code for r in answers]

            return [code for codes in await asyncio.gather(*(pair(b) for b in bodies)) for code in codes]

    return asyncio.run(run())


def _duplicates_total(webhook_url: str) -> int:
    text = httpx.get(f"{webhook_url}/metrics", timeout=10).text
    return sum(int(float(m.group(1))) for m in re.finditer(r"^tgms_webhook_duplicates_total\{[^}]*\} (\S+)$", text,
                                                           re.M))  # fmt: skip


@pytest.mark.slow
def test_each_update_twice_and_after_its_job_makes_one_job(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "7", "Duplicate delivery",
        injected="every update (join requests, group messages, member changes, a private /start; both bots) "
        "delivered to two webhook server processes at the same instant, then by the simulator (Telegram's "
        "redelivery), then once more after its job finished",
        checked="all deliveries answered 200; one webhook_updates row per (bot, update_id), and one job for it "
        "unless its member activity was recorded on intake; every job done once; each join request approved "
        "exactly once at the simulator; duplicate counter = deliveries - updates",
    )  # fmt: skip
    stack: Stack = make_stack(db_url)
    first_webhook = stack.webhook_url
    assert first_webhook is not None
    second_webhook = stack.start_webhook()
    stack.start_worker("tgms")
    stack.start_worker("main")
    stack.wait_jobs_idle()
    sim = stack.sim
    bot_paths = {stack.main_bot_id: "/api/webhook", stack.tgms_bot_id: "/api/webhook/tgms"}
    for bot_id in bot_paths:  # Telegram queues updates while no webhook is set
        sim.state.set_webhook(bot_id, "", allowed_updates=ALLOWED_UPDATES)

    managed = add_groups(stack, tgms_chats(stack, 3))
    both = sim.state.create_chat("supergroup", "Both bots")  # both bots admins: each gets the request
    add_groups(stack, [{"id": both.id, "title": both.title, "type": both.type}])
    requests: list[tuple[int, int]] = []
    for chat in [*managed, both.id]:
        for _ in range(REQUESTS_PER_GROUP):
            requests.append((chat, sim.state.create_join_request(chat, None).user_id))
        member = sim.state.create_user("Member")
        sim.state.add_member(chat, member.id)  # chat_member + new_chat_members service message
        sim.state.post_message(chat, member.id, "/help")
    sim.state.post_message(None, sim.state.create_user("Ann").id, "/start", bot=stack.main_bot_id)

    queued = {bot_id: stack.ctl.pending_updates(bot_id) for bot_id in bot_paths}
    bodies = {bot_id: [json.dumps(u).encode() for u in updates] for bot_id, updates in queued.items()}
    first_round = sum(len(b) for b in bodies.values())
    assert first_round >= len(requests) + 5 and all(bodies.values())

    # Deliveries 1 and 2: each update to both webhook processes at once, so they race on every update.
    codes = [code for bot_id, path in bot_paths.items()
             for code in _race((first_webhook + path, second_webhook + path), bodies[bot_id])]  # fmt: skip
    assert codes == [200] * (2 * first_round)
    won_by_first = first_round - _duplicates_total(first_webhook)
    # Delivery 3: Telegram's own (it never saw a 2xx from these requests), to the second process.
    for bot_id, path in bot_paths.items():
        sim.state.set_webhook(bot_id, second_webhook + path, secret_token=WEBHOOK_SECRET,
                              allowed_updates=ALLOWED_UPDATES)  # fmt: skip

    def settled() -> bool:
        return (all(not stack.ctl.pending_updates(b) for b in bot_paths)
                and not stack.scalar("SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')"))  # fmt: skip

    stack.wait_for(settled, timeout=60, what="all updates stored and their jobs done")
    # Delivery 4, after every job finished.
    late = [code for bot_id, path in bot_paths.items() for code in _post_all(first_webhook + path, bodies[bot_id])]
    assert late == [200] * first_round
    stack.wait_for(settled, timeout=30, what="nothing new after the late duplicates")

    stored = stack.sql("SELECT w.bot, w.update_id, j.job_id, j.status, (j.payload->>'update_id')::bigint, j.retries, "
                       "w.job_id IS NULL AND w.update_type IN ('message', 'chat_member') "
                       "FROM webhook_updates w LEFT JOIN jobs j USING (job_id)")  # fmt: skip
    names = {stack.main_bot_id: "main", stack.tgms_bot_id: "tgms"}
    expected = {(names[bot_id], int(u["update_id"])) for bot_id, updates in queued.items() for u in updates}
    keys = [(str(b), int(u)) for b, u, *_ in stored]
    assert len(keys) == len(set(keys))
    assert expected <= set(keys)  # plus the approvals' own follow-up updates, delivered once by the simulator
    # Each update made one job, done at the first try, or (member activity only) was recorded on intake.
    assert all((job_id is not None and status == "done" and pid == u and retries == 0) or (job_id is None and intake)
               for _, u, job_id, status, pid, retries, intake in stored)  # fmt: skip
    with_job = sum(1 for *_, intake in stored if not intake)
    assert stack.scalar("SELECT count(*) FROM jobs WHERE job_type IN ('tgms_process_join_request', "
                        "'process_telegram_update')") == with_job  # fmt: skip

    approvals = stack.calls(APPROVE)
    assert per_request(approvals, ok=True) == dict.fromkeys(requests, 1)
    assert [c for c in approvals if not c["ok"]] == []  # no second attempt by a duplicate job
    statuses = stack.sql("SELECT chat_id, user_id, status FROM join_requests")
    assert sorted((int(c), int(u)) for c, u, s in statuses if s == "approved") == sorted(requests)
    assert len(statuses) == len(requests)

    sim_deliveries = [a for a in sim.dispatcher.recent_attempts(limit=100_000) if a["ok"]]
    deliveries = len(sim_deliveries) + 3 * first_round
    duplicates = _duplicates_total(first_webhook) + _duplicates_total(second_webhook)
    assert duplicates == deliveries - len(keys)
    rec.measure("updates", len(keys))
    rec.measure("deliveries", deliveries)
    rec.measure("duplicates acknowledged", duplicates)
    rec.measure("races won by process A/B", f"{won_by_first}/{first_round - won_by_first}")
    rec.measure("jobs", with_job)
    rec.measure("recorded on intake (no job)", len(keys) - with_job)
    rec.measure("approvals", len(requests))
