"""Scenarios 15a and 15b: PostgreSQL, the webhook and two TGMS worker hosts on separate network
namespaces of this machine (tests/reliability/hosts.py), the simulator playing Telegram.

- 15a: mid-broadcast (500 groups) and while join requests arrive, worker host w1 loses the database
  network (its Telegram traffic still flows: the realistic split) for 30 s, then gets it back. Its TCP
  connections to PostgreSQL go silent rather than closed, so only the libpq TCP timeouts tell it; its
  leases lapse, it stops its handlers, w2 takes the jobs over, and w1 rejoins once healed.
- 15b: PostgreSQL (its own host) is restarted on the same address while both worker hosts run the
  same load: every worker reconnects, nothing is lost or done twice.

Needs root and iproute2 (skipped with the reason otherwise).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from telegram_sim.config import SimConfig
from tests.token_guard import register_secret
from tests.workers.harness import ADMIN_KEY, WEBHOOK_SECRET

from .hosts import HostedStack, Hosts, NamespacedPostgres, unavailable
from .oracle import per_chat, per_request
from .results import ScenarioFactory
from .world import managed_chats

pytestmark = pytest.mark.slow

GROUPS = 500
JOIN_GROUPS = 10
JOIN_RATE = 5.0  # join requests per second, for the whole scenario
SEND_RATE = "12"  # TGMS_RATE_PER_SECOND: 500 groups take ~40 s, so the cut lands mid-broadcast
LEASE = "8"  # TGMS_JOB_LEASE_SECONDS
TCP_TIMEOUT = "6"  # TGMS_DB_TCP_TIMEOUT_SECONDS
CUT_AFTER, CUT_FOR = 8.0, 30.0
RESTART_AFTER, DOWN_FOR = 8.0, 5.0


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Hosts, NamespacedPostgres, HostedStack]]:
    why_not = unavailable()  # probed here, not at collection: it creates a namespace
    if why_not is not None:
        pytest.skip(why_not)
    with Hosts(["pg", "web", "w1", "w2"]) as hosts, NamespacedPostgres(hosts) as pg:
        config = SimConfig(enforce_flood_limits=False, webhook_retry_after_max=0.5, webhook_retry_max=0.5)
        stack = HostedStack(pg.url, tmp_path, hosts, sim_config=config, env={
            "TGMS_RATE_PER_SECOND": SEND_RATE, "TGMS_JOB_LEASE_SECONDS": LEASE,
            "TGMS_DB_TCP_TIMEOUT_SECONDS": TCP_TIMEOUT})  # fmt: skip
        for secret in (stack.main_token, stack.tgms_token, WEBHOOK_SECRET, ADMIN_KEY):
            register_secret(secret)
        try:
            stack.sim.start()
            stack.start_webhook_on("web")
            yield hosts, pg, stack
        finally:
            stack.close()


def _drive(stack: HostedStack, chats: list[int], seconds: float, made: list[tuple[int, int, float]]) -> None:
    state = stack.sim.state
    start = time.perf_counter()
    for i in range(int(JOIN_RATE * seconds)):
        delay = start + i / JOIN_RATE - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        chat = chats[i % len(chats)]
        made.append((chat, state.create_join_request(chat, None).user_id, time.time()))


def _check_outcome(
    stack: HostedStack, made: list[tuple[int, int, float]], broadcast_id: int, targets: list[int]
) -> dict[str, int]:
    """What both scenarios require; returns the broadcast's row counts by status."""
    n = len(made)
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM join_requests WHERE status = 'approved'") >= n,
                   timeout=90, interval=0.3, what="every join request approved")  # fmt: skip
    stack.wait_for(lambda: stack.scalar("SELECT status FROM broadcasts WHERE broadcast_id = %s", (broadcast_id,))
                   == "done", timeout=120, interval=0.3, what="broadcast done")  # fmt: skip
    stack.wait_jobs_idle(timeout=60)

    approvals = stack.calls("approveChatJoinRequest")
    assert per_request(approvals, ok=True) == {(c, u): 1 for c, u, _ in made}
    assert stack.scalar("SELECT count(*) FROM join_requests") == n
    # Every group: exactly one copy, or reported ambiguous (then at most one); nothing left pending.
    rows = dict(stack.sql("SELECT chat_id, status FROM sent_messages WHERE broadcast_id = %s", (broadcast_id,)))
    assert sorted(rows) == sorted(targets)
    copies = per_chat(stack.calls("sendMessage"), ok=True)
    wrong = {c: (s, copies[c]) for c, s in rows.items()
             if not ((s == "sent" and copies[c] == 1) or (s == "ambiguous" and copies[c] <= 1))}  # fmt: skip
    assert not wrong, wrong
    # Stuck: failed, running past its lease, or due for a while and not taken (a periodic job may
    # be running or just due at this moment: that is not stuck).
    stuck = stack.sql("SELECT job_id, job_type, status FROM jobs WHERE status = 'failed' "
                      "OR (status = 'running' AND locked_until < now()) "
                      "OR (status = 'pending' AND run_at <= now() - interval '5 seconds')")  # fmt: skip
    assert not stuck, stuck
    counts: dict[str, int] = {}
    for status in rows.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def _sender_stops(log: str) -> list[tuple[float, str]]:
    """When and how each broadcast sender in a worker's log stopped: 'lease lapsed' (when the runner
    decided to stop it: its handler may take longer to end, waiting for a shielded write to give up)
    or 'connection lost' (it ended on its own database error)."""
    stops = []
    for line in log.splitlines():
        if "(tgms_send_to_groups)" not in line:
            continue
        lapsed = "stopping its handler: lease lapsed" in line
        lost = "database connection lost" in line and "runs again" in line
        how = "lease lapsed" if lapsed else "connection lost" if lost else None
        if how is not None:  # the log's times are local, as time.mktime reads them
            at = time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")) + int(line[20:23]) / 1000
            stops.append((at, how))
    return stops


def test_worker_host_cut_off_from_the_database(
    world: tuple[Hosts, NamespacedPostgres, HostedStack], scenario: ScenarioFactory
) -> None:
    hosts, _pg, stack = world
    rec = scenario(
        "15a", "Network partition: a worker host loses the database",
        injected=f"4 network namespaces (PostgreSQL, webhook, worker hosts w1 and w2, each running a TGMS and a "
        f"main worker; w2's TGMS worker starts once w1 runs the broadcast's senders); a broadcast to {GROUPS} "
        f"groups at {SEND_RATE}/s and join requests at {JOIN_RATE:g}/s; {CUT_AFTER:g} s in, w1's link to the "
        f"database network goes down (packets dropped silently; its Telegram link stays up) for {CUT_FOR:g} s; "
        f"job lease {LEASE} s, TGMS_DB_TCP_TIMEOUT_SECONDS {TCP_TIMEOUT}",
        checked="every group has exactly 1 copy at the simulator (row 'sent') or is reported ambiguous (0 or 1 "
        "copy); every join request approved exactly once at the simulator; w1 stops its handlers when its "
        "leases lapse (its log), w2 finishes the work; after healing w1's processes (never restarted) "
        "heartbeat and complete jobs again; no job failed, running past its lease or overdue",
    )  # fmt: skip
    # w1's TGMS worker starts alone, so that the broadcast's senders are all w1's when the cut comes
    # (whichever worker is woken claims every sender job at once); w2's starts once they run.
    workers = {"w1": [stack.start_worker_on("w1", "tgms"), stack.start_worker_on("w1", "main")],
               "w2": [stack.start_worker_on("w2", "main")]}  # fmt: skip
    stack.wait_jobs_idle()
    targets = managed_chats(stack, GROUPS)
    joins = targets[:JOIN_GROUPS]  # join requests arrive in some of the broadcast's groups
    made: list[tuple[int, int, float]] = []
    total = CUT_AFTER + CUT_FOR + 10.0
    driver = threading.Thread(target=_drive, args=(stack, joins, total, made), daemon=True)
    broadcast_id = stack.broadcast({"text": "partition test", "target": "all"})
    # the first sender and the helper it fans out (2 per live TGMS worker), all running
    senders = "SELECT count(*) >= 2 AND bool_and(status = 'running') FROM jobs WHERE job_type = 'tgms_send_to_groups'"
    stack.wait_for(lambda: stack.scalar(senders), timeout=30, what="the broadcast's senders running on w1")
    workers["w2"].insert(0, stack.start_worker_on("w2", "tgms"))
    driver.start()

    time.sleep(CUT_AFTER)
    sent_at_cut = len(stack.calls("sendMessage", ok=True))
    hosts.cut("w1", "db")
    cut_at = time.time()
    time.sleep(CUT_FOR)
    w1_pids = [w.pid for w in workers["w1"]]
    jobs_done = "SELECT coalesce(sum(jobs_done), 0) FROM bot_health WHERE pid = ANY(%s)"
    done_before_heal = stack.scalar(jobs_done, (w1_pids,))
    hosts.heal("w1")
    healed_at = time.time()
    driver.join(60)
    assert not driver.is_alive()

    counts = _check_outcome(stack, made, broadcast_id, targets)
    # w1 rode it out: no process exited; both heartbeat again and w1 did work after the heal.
    assert all(p.poll() is None for procs in workers.values() for p in procs)
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM bot_health WHERE pid = ANY(%s) AND status = 'running' "
                                        "AND updated_at > to_timestamp(%s)", (w1_pids, healed_at)) == 2,
                   timeout=30, what="w1's workers heartbeat after the heal")  # fmt: skip
    done_after = stack.scalar(jobs_done, (w1_pids,))
    # w1's senders stopped within a lease of the cut (w2 may take their jobs from then on): stopped by
    # the runner when the lease lapsed by w1's own clock, or ended by the handler itself on its lost
    # database connection, whichever came first.
    logs = "".join(stack.log_of(p) for p in workers["w1"])
    stops = _sender_stops(logs)
    assert stops, "w1 ran the broadcast's senders when it was cut off: they must stop\n" + logs[-3000:]
    late = [(round(at - cut_at, 1), how) for at, how in stops if at > cut_at + float(LEASE) + 1.0]
    assert not late, f"w1's senders stopped after their lease (seconds after the cut): {late}"
    lapsed = sum(1 for _, how in stops if how == "lease lapsed")

    ok = [float(c["at"]) for c in stack.calls("approveChatJoinRequest", ok=True)]
    cut_window = [t for t in ok if cut_at <= t <= healed_at]
    rec.measure("groups", len(targets))
    rec.measure("sent before the cut", sent_at_cut)
    for status in ("sent", "ambiguous", "failed", "skipped"):
        rec.measure(f"rows {status}", counts.get(status, 0))
    rec.measure("join requests", len(made))
    rec.measure("approvals during the cut", len(cut_window))
    rec.measure("refused repeat approvals", sum(1 for c in stack.calls("approveChatJoinRequest") if not c["ok"]))
    rec.measure("w1 senders stopped on lease lapse", lapsed)
    rec.measure("w1 senders ended on the lost connection", len(stops) - lapsed)
    rec.measure("w1 jobs done after the heal", int(done_after) - int(done_before_heal))
    rec.measure("broadcast took (s)", round(float(stack.scalar(
        "SELECT extract(epoch FROM finished_at - started_at) FROM broadcasts WHERE broadcast_id = %s",
        (broadcast_id,))), 1))  # fmt: skip


def test_postgres_restarted_under_two_worker_hosts(
    world: tuple[Hosts, NamespacedPostgres, HostedStack], scenario: ScenarioFactory
) -> None:
    _hosts, pg, stack = world
    rec = scenario(
        "15b", "PostgreSQL restart with two worker hosts",
        injected=f"the namespaces of 15a; a broadcast to {GROUPS} groups at {SEND_RATE}/s and join requests at "
        f"{JOIN_RATE:g}/s; {RESTART_AFTER:g} s in, PostgreSQL (its own host) stops (fast shutdown: "
        f"connections cut) for {DOWN_FOR:g} s and starts again on the same address",
        checked="as 15a: one copy per group or ambiguous, each join request approved exactly once, no job "
        "stuck; all four worker processes (never restarted) heartbeat after the restart",
    )  # fmt: skip
    workers = [stack.start_worker_on(h, pool) for h in ("w1", "w2") for pool in ("tgms", "main")]
    stack.wait_jobs_idle()
    targets = managed_chats(stack, GROUPS)
    joins = targets[:JOIN_GROUPS]  # join requests arrive in some of the broadcast's groups
    made: list[tuple[int, int, float]] = []
    driver = threading.Thread(target=_drive, args=(stack, joins, RESTART_AFTER + DOWN_FOR + 10.0, made), daemon=True)
    broadcast_id = stack.broadcast({"text": "restart test", "target": "all"})
    driver.start()
    time.sleep(RESTART_AFTER)
    pg.stop("fast")
    down_at = time.time()
    time.sleep(DOWN_FOR)
    pg.start()
    up_at = time.time()
    driver.join(60)
    assert not driver.is_alive()

    counts = _check_outcome(stack, made, broadcast_id, targets)
    assert all(p.poll() is None for p in workers)
    stack.wait_for(lambda: stack.scalar("SELECT count(*) FROM bot_health WHERE pid = ANY(%s) AND status = 'running' "
                                        "AND updated_at > to_timestamp(%s)", ([w.pid for w in workers], up_at)) == 4,
                   timeout=30, what="every worker heartbeats after the restart")  # fmt: skip
    ok = [float(c["at"]) for c in stack.calls("approveChatJoinRequest", ok=True)]
    rec.measure("groups", len(targets))
    for status in ("sent", "ambiguous", "failed"):
        rec.measure(f"rows {status}", counts.get(status, 0))
    rec.measure("join requests", len(made))
    rec.measure("outage (s)", round(up_at - down_at, 1))
    rec.measure("first approval after restart (s)", round(min((t for t in ok if t > up_at), default=up_at) - up_at, 1))
    rec.measure("refused repeat approvals", sum(1 for c in stack.calls("approveChatJoinRequest") if not c["ok"]))
