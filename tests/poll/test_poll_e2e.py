"""`tgms poll` end to end, real processes: simulator (no webhook) → getUpdates → the intake's store →
the TGMS worker → approveChatJoinRequest, counted at the simulator (one approval per request) and in
the database (one webhook_updates row and one job per update)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.pg_control import DedicatedPostgres
from tests.reliability.world import managed_chats
from tests.support import free_port, http_ok
from tests.token_guard import register_secret
from tests.workers.harness import REPO, WEBHOOK_SECRET, Stack

from .helpers import JOIN_JOB, approvals_per_request, poll_conflicts, start_poller


def _drive(stack: Stack, chats: list[int], rate: float, seconds: float, made: list[tuple[int, int]]) -> None:
    """Join requests at a steady `rate` on an absolute schedule."""
    start = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        chat = chats[i % len(chats)]
        made.append((chat, stack.sim.state.create_join_request(chat, None).user_id))


def _assert_exactly_once(stack: Stack, made: list[tuple[int, int]]) -> None:
    n = len(made)
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'approved'") >= n,
                   timeout=90, interval=0.2, what=f"{n} join requests approved")  # fmt: skip
    # Every job finishes, including one retried with backoff after an outage (scheduled, so not "due").
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM jobs WHERE job_type = %s AND status IN "
                                        "('pending', 'running')", (JOIN_JOB,)) == 0,
                   timeout=120, interval=0.2, what="every join-request job finished")  # fmt: skip
    assert approvals_per_request(stack) == {key: 1 for key in made}
    assert stack.sql(f"SELECT status, count(*) FROM jobs WHERE job_type = '{JOIN_JOB}' GROUP BY status") == [
        ("done", n)
    ]
    stored = stack.sql("SELECT count(*), count(DISTINCT update_id), count(job_id) FROM webhook_updates "
                       "WHERE bot = 'tgms' AND update_type = 'chat_join_request'")  # fmt: skip
    assert stored == [(n, n, n)]


def _fetched_update_ids(stack: Stack) -> list[int]:
    """Every update id getUpdates handed out (a redelivered one appears more than once)."""
    return [u["update_id"] for c in stack.calls("getUpdates", ok=True) for u in (c.get("result") or [])]


def _assert_confirmed_only_after_commit(stack: Stack) -> None:
    """Every getUpdates with an offset confirms only updates stored before the call (their row's
    transaction started earlier): the batch was committed before Telegram was told."""
    stored = {uid: at.timestamp() for uid, at in stack.sql("SELECT update_id, received_at FROM webhook_updates")}
    handed_out: set[int] = set()
    checked = 0
    for call in stack.calls("getUpdates"):
        offset = call["params"].get("offset")
        if offset is not None:
            for uid in [u for u in handed_out if u < int(offset)]:
                assert uid in stored and stored[uid] <= call["at"], (uid, call["seq"])
                handed_out.discard(uid)
                checked += 1
        handed_out.update(u["update_id"] for u in call.get("result") or [] if call["ok"])
    assert checked > 0


def test_join_requests_reach_the_worker_through_polling(stack: Stack) -> None:
    stack.start_worker("tgms")
    start_poller(stack)
    chat = stack.ctl.create_chat("supergroup", "Polled", bots=[stack.tgms_bot_id])
    stack.add_group(chat)
    made = [(chat["id"], stack.ctl.join_request(chat["id"])["user_id"]) for _ in range(5)]
    _assert_exactly_once(stack, made)
    # getUpdates asked for what set-webhook asks for, with a long-poll timeout.
    first = stack.calls("getUpdates")[0]["params"]
    allowed = first["allowed_updates"]
    assert "chat_join_request" in allowed and "chat_member" in allowed
    assert int(first["timeout"]) == 50
    # Its health row counts what it stored (the requests, and the approvals' follow-up updates).
    health = "SELECT status, jobs_done FROM bot_health WHERE bot_name = 'poller' AND worker_id LIKE 'poller:tgms:%%'"
    stored = "SELECT count(*) FROM webhook_updates WHERE bot = 'tgms'"
    stack.wait_for(lambda: stack.sql(health) == [("polling", stack.scalar(stored))], timeout=10, what="health row")


def test_polled_rows_are_the_webhooks_rows_and_dedupe_across_intakes(stack: Stack) -> None:
    """An update polled and then posted to the webhook (or the reverse) makes one row and one job,
    and both intakes store the same job for the same kind of update."""
    start_poller(stack, "--bot", "tgms")
    chat = stack.ctl.create_chat("supergroup", "Both ways", bots=[stack.tgms_bot_id])
    stack.ctl.join_request(chat["id"])
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM webhook_updates") == 1, what="the polled update")
    polled = _fetched_update_ids(stack)[0]
    update = next(u for c in stack.calls("getUpdates", ok=True) for u in c["result"] if u["update_id"] == polled)
    port = free_port()
    stack._spawn("webhook", ["-m", "webhook_server", "--port", str(port)], stack.env())
    url = f"http://127.0.0.1:{port}/api/webhook/tgms"
    stack.wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), what="webhook up")
    headers = {"X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET}
    # The polled update comes again through the webhook: a duplicate, no second job.
    assert httpx.post(url, content=json.dumps(update), headers=headers, timeout=10).status_code == 200
    assert stack.scalar("SELECT count(*) FROM jobs") == 1
    # A new update of the same kind through the webhook: the same job, but for its own payload.
    twin = {**update, "update_id": polled + 1000}
    assert httpx.post(url, content=json.dumps(twin), headers=headers, timeout=10).status_code == 200
    rows = stack.sql("SELECT job_type, priority, max_retries, payload, pool FROM jobs ORDER BY job_id")
    assert len(rows) == 2
    (t1, p1, m1, payload1, pool1), (t2, p2, m2, payload2, pool2) = rows
    assert (t1, p1, m1, pool1) == (t2, p2, m2, pool2) == (JOIN_JOB, -10, m1, "tgms")
    assert payload1 == {"bot": "tgms", "update_id": polled, "update_type": "chat_join_request", "update": update}
    assert payload2 == {**payload1, "update_id": polled + 1000, "update": twin}
    hooks = stack.sql("SELECT bot, update_type, job_id IS NOT NULL FROM webhook_updates ORDER BY update_id")
    assert hooks == [("tgms", "chat_join_request", True)] * 2


def test_sigkilled_poller_loses_and_duplicates_nothing(stack: Stack) -> None:
    """The poller is SIGKILLed at random moments (while starting, waiting, storing) and restarted at
    once, while join requests arrive at 40/s: each is approved exactly once, one job per update."""
    stack.start_worker("tgms")
    chats = managed_chats(stack, 8)
    rng = random.Random(19)
    made: list[tuple[int, int]] = []
    driver = threading.Thread(target=_drive, args=(stack, chats, 40.0, 10.0, made), daemon=True)
    proc = start_poller(stack, "--bot", "tgms")
    driver.start()
    kills = 0
    while driver.is_alive():
        time.sleep(rng.uniform(0.4, 1.8))
        stack.kill(proc, signal.SIGKILL)
        kills += 1
        proc = start_poller(stack, "--bot", "tgms", wait=None)
    driver.join()
    assert kills >= 5
    _assert_exactly_once(stack, made)
    _assert_confirmed_only_after_commit(stack)
    fetched = _fetched_update_ids(stack)
    assert set(fetched) >= {u for (u,) in stack.sql("SELECT update_id FROM webhook_updates")}
    print(
        f"kills {kills}; updates {len(set(fetched))}; handed out again after a kill {len(fetched) - len(set(fetched))}"
    )


def test_two_pollers_one_bot_no_conflicts_and_takeover(stack: Stack) -> None:
    stack.start_worker("tgms")
    chats = managed_chats(stack, 4)
    first = start_poller(stack, "--bot", "tgms")
    second = start_poller(stack, "--bot", "tgms", wait="standby")
    made: list[tuple[int, int]] = []
    _drive(stack, chats, 20.0, 2.0, made)
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM webhook_updates") >= len(made), what="stored")
    assert stack.scalar("SELECT status FROM bot_health WHERE pid = %s", (second.pid,)) == "standby"
    assert poll_conflicts(stack) == []  # while both run: not one 409

    # A clean stop: the standby takes over within a few seconds. The stopping poller gives up its
    # open long poll, which Telegram answers 409 when the next request (its own last confirmation)
    # arrives: an answer nobody reads. No live poller ever gets a 409.
    stopped_at = time.monotonic()
    stack.kill(first, signal.SIGTERM)
    assert first.returncode == 0
    stack.wait_for(lambda: stack.scalar("SELECT status FROM bot_health WHERE pid = %s", (second.pid,)) == "polling",
                   timeout=10, what="takeover after SIGTERM")  # fmt: skip
    assert time.monotonic() - stopped_at < 5
    _drive(stack, chats, 20.0, 1.0, made)
    assert len(poll_conflicts(stack)) <= 1

    # A third stands by; the active one is SIGKILLed: the third takes over. Again the only 409 is
    # the one answering the dead poller's open request.
    third = start_poller(stack, "--bot", "tgms", wait="standby")
    killed_at = time.monotonic()
    stack.kill(second, signal.SIGKILL)
    stack.wait_for(lambda: stack.scalar("SELECT status FROM bot_health WHERE pid = %s", (third.pid,)) == "polling",
                   timeout=10, what="takeover after SIGKILL")  # fmt: skip
    takeover = time.monotonic() - killed_at
    assert takeover < 5
    _drive(stack, chats, 20.0, 1.0, made)
    _assert_exactly_once(stack, made)
    assert len(poll_conflicts(stack)) <= 2
    assert "another getUpdates caller" not in stack.log_tails(1000)  # no poller was ever told 409
    print(f"takeover after SIGKILL {takeover:.1f} s")


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """What the process says about its failure (its log lines aside), and never a traceback."""
    assert "Traceback" not in result.stderr + result.stdout
    return [line for line in result.stderr.splitlines() if not line[:4].isdigit()]  # log lines start with a date


def _run_poll(stack: Stack, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tgms_tui.commands.cli", "poll", *args], cwd=REPO,
                          env=stack.env(), capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_a_webhook_already_set(stack: Stack) -> None:
    state = stack.sim.state
    dead_hook = f"http://127.0.0.1:{free_port()}/api/webhook/tgms"
    state.set_webhook(stack.tgms_bot_id, dead_hook, secret_token=WEBHOOK_SECRET)
    stack.start_worker("tgms")
    chats = managed_chats(stack, 1)
    kept = state.create_join_request(chats[0], None).user_id

    refused = _run_poll(stack, "--bot", "tgms")
    assert refused.returncode == 1
    lines = _error_lines(refused)
    assert len(lines) == 1 and "webhook set" in lines[0], refused.stderr
    assert "tgms set-webhook --delete" in lines[0] and "--delete-webhook" in lines[0]
    assert "Traceback" not in refused.stderr + refused.stdout
    assert stack.sim.state.bots[stack.tgms_bot_id].webhook.url == dead_hook

    # --delete-webhook removes it and keeps what Telegram holds: the waiting request is approved.
    poller = start_poller(stack, "--bot", "tgms", "--delete-webhook")
    assert stack.sim.state.bots[stack.tgms_bot_id].webhook.url == ""
    _assert_exactly_once(stack, [(chats[0], kept)])
    stack.kill(poller, signal.SIGTERM)

    # --drop-pending with it: what waited is gone, later updates flow.
    state.set_webhook(stack.tgms_bot_id, dead_hook, secret_token=WEBHOOK_SECRET)
    state.create_join_request(chats[0], None)
    start_poller(stack, "--bot", "tgms", "--delete-webhook", "--drop-pending")
    later = state.create_join_request(chats[0], None).user_id
    _assert_exactly_once(stack, [(chats[0], kept), (chats[0], later)])

    assert _run_poll(stack, "--drop-pending").returncode == 2  # only with --delete-webhook


def test_webhook_set_while_polling_stops_the_poller(stack: Stack) -> None:
    proc = start_poller(stack, "--bot", "tgms", "--timeout", "1")
    stack.sim.state.set_webhook(stack.tgms_bot_id, f"http://127.0.0.1:{free_port()}/x", secret_token=WEBHOOK_SECRET)
    assert proc.wait(30) == 1
    log = stack.log_tails()
    assert "a webhook was set while polling" in log and "Traceback" not in log


def test_revoked_token_is_one_clear_error(stack: Stack) -> None:
    # Unknown to Telegram from the start.
    result = subprocess.run([sys.executable, "-m", "webhook_server.poll", "--bot", "tgms"], cwd=REPO,
                            env=stack.env(TGMS_BOT_TOKEN="123456789:AA" + "x" * 33),
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 1
    lines = _error_lines(result)
    assert len(lines) == 1 and "rejects the token" in lines[0] and "TGMS_BOT_TOKEN" in lines[0], result.stderr
    # Revoked while polling: the poller exits non-zero with the same line.
    proc = start_poller(stack, "--bot", "tgms", "--timeout", "1")
    stack.ctl.add_fault("error", method="getUpdates", error_code=401, description="Unauthorized", times=None)
    assert proc.wait(30) == 1
    assert "rejects the token" in stack.log_tails()


def test_telegram_faults_back_off_and_drop_nothing(stack: Stack) -> None:
    """429 with retry_after, 500s, a gateway's 502 page and a hang answered 504, on getUpdates: the
    poller waits as told or backs off, and every request is approved once."""
    stack.start_worker("tgms")
    chats = managed_chats(stack, 2)
    proc = start_poller(stack, "--bot", "tgms", "--timeout", "1")
    ctl = stack.ctl
    ctl.add_fault("flood", method="getUpdates", retry_after=2, times=1)
    ctl.add_fault("error", method="getUpdates", error_code=500, description="Internal Server Error", times=2)
    ctl.add_fault("status", method="getUpdates", status=502, times=1)
    ctl.add_fault("hang", method="getUpdates", seconds=0.5, apply=False, times=1)
    made: list[tuple[int, int]] = []
    _drive(stack, chats, 10.0, 2.0, made)
    _assert_exactly_once(stack, made)
    calls = stack.calls("getUpdates")
    flood = next(i for i, c in enumerate(calls) if c.get("error_code") == 429)
    assert calls[flood + 1]["at"] - calls[flood]["at"] >= 2.0  # retry_after honoured
    failures = [c for c in calls if not c["ok"]]
    assert len(failures) == 5, [(c["error_code"], c.get("description")) for c in failures]
    assert stack.scalar("SELECT jobs_failed FROM bot_health WHERE pid = %s", (proc.pid,)) >= 5
    assert proc.poll() is None


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarted_mid_batch(mode: str, tmp_path: Path) -> None:
    """PostgreSQL stopped (fast: connections cut; immediate: a crash) for 4 s while join requests
    arrive at 40/s: the poller stops confirming, waits, resumes on its own; each request approved
    once, one job per update."""
    with DedicatedPostgres() as pg, Stack(pg.url, tmp_path, webhook=False) as stack:
        for secret in (stack.main_token, stack.tgms_token, WEBHOOK_SECRET):
            register_secret(secret)
        worker = stack.start_worker("tgms", TGMS_JOB_LEASE_SECONDS="5")
        chats = managed_chats(stack, 6)
        poller = start_poller(stack, "--bot", "tgms")
        made: list[tuple[int, int]] = []
        driver = threading.Thread(target=_drive, args=(stack, chats, 40.0, 9.0, made), daemon=True)
        driver.start()
        time.sleep(2.5)
        pg.stop(mode)
        down = time.time()
        time.sleep(4.0)
        pg.start()
        up = time.time()
        driver.join(60)
        _assert_exactly_once(stack, made)
        assert poller.poll() is None and worker.poll() is None  # rode it out, no restart
        _assert_confirmed_only_after_commit(stack)
        fetched_during = [c for c in stack.calls("getUpdates", ok=True) if down + 3 < c["at"] < up]
        assert fetched_during == []  # it stopped asking Telegram while it could not store
        stack.wait_for(lambda: stack.scalar("SELECT status FROM bot_health WHERE pid = %s AND updated_at > "
                                            "to_timestamp(%s)", (poller.pid, up)) == "polling",
                       timeout=20, what="the poller polling again")  # fmt: skip


def _tgms(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tgms_tui.commands.cli", *args], cwd=REPO, env=stack.env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_doctor_and_set_webhook_say_which_mode_each_bot_is_in(stack: Stack) -> None:
    start_poller(stack, "--bot", "tgms")
    info = _tgms(stack, "set-webhook", "--info").stdout
    assert f"tgms bot (id {stack.tgms_bot_id}): mode long polling" in info
    doctor = _tgms(stack, "doctor", "--skip-groups").stdout
    assert "OK   tgms bot webhook: no webhook set (mode: long polling): `tgms poll` active on" in doctor, doctor
    assert "WARN main bot webhook: no webhook set, and no `tgms poll` running" in doctor, doctor

    hook = f"http://127.0.0.1:{free_port()}"
    stack.sim.state.set_webhook(stack.main_bot_id, f"{hook}/api/webhook", secret_token=WEBHOOK_SECRET)
    info = _tgms(stack, "set-webhook", "--info").stdout
    assert f"main bot (id {stack.main_bot_id}): mode webhook" in info
    doctor = _tgms(stack, "doctor", "--skip-groups").stdout
    assert f"OK   main bot webhook: set to {hook}/api/webhook (mode: webhook)" in doctor, doctor
