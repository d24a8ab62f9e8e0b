"""A real worker process's /metrics (opt-in port, loopback) after it ran jobs against the simulator:
jobs by type, handler durations, Bot API calls by method and outcome, rate-limiter waits and a 429
pause all moved, and no token appears anywhere in the exposition."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx

from tests.support import free_port

from .harness import Stack


def scrape(port: int) -> dict[str, float]:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def test_worker_metrics_count_jobs_calls_waits_and_pauses(stack: Stack) -> None:
    ctl = stack.ctl
    tgms = [stack.tgms_bot_id]
    groups = [stack.add_group(ctl.create_chat("supergroup", bots=tgms, members=3)) for _ in range(3)]
    port = free_port()
    stack.start_worker("tgms", "--metrics-port", str(port), TGMS_MEMBER_COUNT_INTERVAL_SECONDS="3600")
    before = scrape(port)
    assert before.get('tgms_worker_jobs_done_total{job_type="tgms_update_member_counts"}', 0) <= 1

    # One 429 on the first send: the bot pauses (in every process), the sender retries later.
    ctl.add_fault("flood", method="sendMessage", retry_after=1, times=1)
    stack.enqueue("tgms_update_member_counts", {"group_ids": groups})
    broadcast = stack.broadcast({"text": "metrics check", "target": {"kind": "groups", "group_ids": groups}})
    stack.wait_for(
        lambda: stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s", (broadcast,)) == "done",
        timeout=60,
        what="broadcast done",
    )
    stack.wait_jobs_idle()

    after = scrape(port)
    done = 'tgms_worker_jobs_done_total{job_type="tgms_update_member_counts"}'
    assert after[done] >= before.get(done, 0) + 1
    assert after['tgms_worker_jobs_claimed_total{job_type="tgms_send_to_groups"}'] >= 1
    assert after['tgms_worker_job_duration_seconds_count{job_type="tgms_send_to_groups"}'] >= 1
    assert after['tgms_worker_telegram_calls_total{method="getChatMemberCount",outcome="ok"}'] >= 3
    assert after['tgms_worker_telegram_calls_total{method="sendMessage",outcome="ok"}'] == 3
    assert after['tgms_worker_telegram_calls_total{method="sendMessage",outcome="RetryAfter"}'] == 1
    assert after["tgms_worker_rate_limit_pauses_total"] == 1
    assert after["tgms_worker_rate_limit_pause_seconds_total"] >= 1
    assert after['tgms_worker_rate_limit_wait_seconds_count{limiter="messages"}'] >= 4
    assert after['tgms_worker_telegram_call_duration_seconds_count{method="sendMessage"}'] == 4
    assert after["tgms_worker_jobs_in_flight"] == 0

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    for token in (stack.main_token, stack.tgms_token):
        assert token not in text and token.split(":")[1] not in text
    assert not re.search(r"\d{6,}:AA", text)
    assert httpx.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
    assert httpx.post(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 405


def test_worker_metrics_port_flag_is_checked(stack: Stack) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", "worker", "tgms", "--metrics-port", "70000"],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "--metrics-port" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", "worker", "tgms"],
        env=stack.env(TGMS_WORKER_METRICS_PORT="http"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "TGMS_WORKER_METRICS_PORT" in (done.stdout + done.stderr)


def test_main_worker_rolls_analytics_up_and_reports_it(stack: Stack) -> None:
    """The main worker runs `analytics_rollup` at its first heartbeat (then every 10 minutes): the
    fleet's hourly rows appear, and its /metrics (port from TGMS_WORKER_METRICS_PORT) counts the job."""
    group = stack.add_group(stack.ctl.create_chat("supergroup", bots=[stack.tgms_bot_id], members=4))
    stack.sql("INSERT INTO member_count_history (group_id, member_count) VALUES (%s, 6)", (group,))
    stack.sql("UPDATE managed_groups SET member_count = 6 WHERE group_id = %s", (group,))
    port = free_port()
    stack.start_worker("main", TGMS_WORKER_METRICS_PORT=str(port))
    stack.wait_for(
        lambda: stack.scalar("SELECT count(*) FROM jobs WHERE job_type = 'analytics_rollup' AND status = 'done'"),
        timeout=60,
        what="a rollup run",
    )
    current = stack.sql(
        "SELECT members, groups, complete, active_members FROM analytics_fleet_hourly"
        " WHERE hour = date_trunc('hour', now())"
    )
    assert current and current[0][:3] == (6, 1, False)  # from the first reading's hour: here, the current one
    samples = scrape(port)
    assert samples['tgms_worker_jobs_done_total{job_type="analytics_rollup"}'] >= 1
    assert samples['tgms_worker_job_duration_seconds_count{job_type="analytics_rollup"}'] >= 1
