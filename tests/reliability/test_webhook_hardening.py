"""Scenarios 11a-11d: the webhook server against hostile clients, with the real processes.

11a: a client behind (or pretending to be behind) a proxy cannot choose the address the admin and
monitoring allow-lists check; an unsafe proxy trust is refused at start. 11b: webhook bodies that
close their object early and go on cannot add or override keys of their stored job. 11c: slow
clients (silent, trickling headers, trickling a body after a valid secret) are cut at the request
timeout while Telegram's updates keep being stored. 11d: an operator's client that loses the answer
and retries (also several times at once) makes one broadcast: each group gets one copy at the
simulator.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.webhook.conftest import ADMIN_KEY as PROCESS_ADMIN_KEY
from tests.webhook.conftest import SECRET
from tests.webhook.process import run_webhook_command, webhook_process
from tests.workers.harness import ADMIN_KEY, Stack

from .results import ScenarioFactory
from .world import StackFactory, managed_chats

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
ROUTES = {"/api/webhook": "main", "/api/webhook/tgms": "tgms"}


def _rows(db_url: str, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute(query).fetchall()


# ---------------------------------------------------------------------------------------- 11a


@pytest.mark.slow
def test_allow_lists_behind_proxies(db_url: str, tmp_path: Path, scenario: ScenarioFactory) -> None:
    rec = scenario(
        "11a", "Hostile clients: allow-lists behind proxies",
        injected="starts with `--forwarded-allow-ips '*'` (flag, FORWARDED_ALLOW_IPS, '*' in a list) and an "
        "admin or metrics allow-list; then, with 127.0.0.1 listed as the proxy and 10.0.0.0/8 allowed, admin "
        "and monitoring requests whose X-Forwarded-For puts an allowed address left of an outside one, and "
        "requests from a peer that is not a listed proxy claiming an allowed address",
        checked="each unsafe start exits 2 with one line naming --forwarded-allow-ips and the fix; the address "
        "checked is the right-most one that is not a listed proxy: spoofed left-most addresses and headers from "
        "unlisted peers get 403 on /api/tgms/send, /healthz, /readyz and /metrics; a client forwarded from inside "
        "the list gets 200; broadcasts are recorded as api:<that client>",
    )  # fmt: skip
    lists = {"TGMS_ADMIN_ALLOW_NETWORKS": "10.0.0.0/8", "TGMS_METRICS_ALLOW_NETWORKS": "10.0.0.0/8"}
    unsafe = [
        (["--forwarded-allow-ips", "*"], {"TGMS_ADMIN_ALLOW_NETWORKS": "10.0.0.0/8"}),
        ([], {"FORWARDED_ALLOW_IPS": "*", "TGMS_ADMIN_ALLOW_NETWORKS": "10.0.0.0/8"}),
        (["--forwarded-allow-ips", "10.0.0.5, *"], {"TGMS_METRICS_ALLOW_NETWORKS": "10.0.0.0/8"}),
    ]
    for args, env in unsafe:
        done = run_webhook_command(db_url, tmp_path, *args, **env)
        assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "--forwarded-allow-ips" in done.stderr and "Traceback" not in done.stderr

    body = {"text": "hello", "target": {"group_ids": [-1001]}}
    with psycopg.connect(db_url, autocommit=True) as conn:  # a broadcast to no managed group is refused
        conn.execute("INSERT INTO managed_groups (group_id, title) VALUES (-1001, 'G') ON CONFLICT DO NOTHING")
    key = {"x-api-key": PROCESS_ADMIN_KEY}
    spoofs = ["10.9.9.9, 192.0.2.7", "10.1.1.1, 10.2.2.2, 198.51.100.4", "10.9.9.9,192.0.2.7, 127.0.0.1"]
    honest = ["192.0.2.7, 10.9.9.9", "10.4.4.4"]
    refused = allowed = 0
    with (
        webhook_process(db_url, tmp_path, "--forwarded-allow-ips", "127.0.0.1", **lists) as server,
        httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client,
    ):
        for forwarded, expected in [*((f, 403) for f in spoofs), *((f, 200) for f in honest)]:
            headers = {"X-Forwarded-For": forwarded}
            answers = [client.post("/api/tgms/send", json=body, headers={**key, **headers}).status_code]
            answers += [client.get(path, headers=headers).status_code for path in ("/healthz", "/readyz", "/metrics")]
            assert answers == [expected] * 4, (forwarded, answers)
            refused += expected == 403
            allowed += expected == 200
    with (
        webhook_process(db_url, tmp_path, "--forwarded-allow-ips", "192.0.2.1", **lists) as server,
        httpx.Client(base_url=server.url, timeout=10, trust_env=False) as client,
    ):
        claim = {"X-Forwarded-For": "10.9.9.9"}
        assert client.post("/api/tgms/send", json=body, headers={**key, **claim}).status_code == 403
        assert [client.get(p, headers=claim).status_code for p in ("/healthz", "/readyz", "/metrics")] == [403] * 3
        refused += 1
    creators = sorted(row[0] for row in _rows(db_url, "SELECT created_by FROM broadcasts"))
    assert creators == ["api:10.4.4.4", "api:10.9.9.9"]
    rec.measure("unsafe starts refused", len(unsafe))
    rec.measure("spoofed requests refused (x4 endpoints)", refused)
    rec.measure("forwarded clients allowed", allowed)


# ---------------------------------------------------------------------------------------- 11b


def _honest(update_id: int, kind: str) -> dict[str, Any]:
    chat = {"id": -1000 - update_id, "type": "supergroup", "title": 'Group "{x}" [y]'}
    user = {"id": 7000 + update_id, "is_bot": False, "first_name": "A\\B"}
    if kind == "chat_join_request":
        return {"update_id": update_id, kind: {"chat": chat, "from": user, "user_chat_id": user["id"], "date": 0}}
    return {"update_id": update_id, kind: {"message_id": 1, "date": 0, "chat": chat, "from": user, "text": "}{"}}


SUFFIXES = [
    ',"bot":"{other}","update_type":"chat_join_request","update":"not-an-object"',
    ',"bot":"{other}","x":{{"a":1}}',
    '{{"update_id":{id},"chat_join_request":{{}}}}',
    '}},{{"bot":"{other}","update_id":{id},"update_type":"chat_join_request","update":{{"update_id":{id}}}',
    ',"update":{{"update_id":{id},"chat_join_request":{{}}}}',
    "]",
]


@pytest.mark.slow
async def test_webhook_bodies_cannot_reach_outside_their_update(
    db_url: str, tmp_path: Path, scenario: ScenarioFactory
) -> None:
    rec = scenario(
        "11b", "Hostile clients: bodies spliced into their job",
        injected=f"to the webhook process, with the right secret, both routes: Telegram-shaped updates (compact, "
        f"update_id first) with braces, brackets, quotes and backslashes in their strings, and each of them again "
        f"with one of {len(SUFFIXES)} continuations after its closing brace (extra payload keys for the other bot "
        "and a join-request type, a string `update`, a second object, a second payload, a replaced update, a stray "
        "bracket), all at once so they share group commits, then each spliced one alone",
        checked="every spliced body 400, every honest one 200; the stored jobs are exactly the honest updates: "
        "payload keys exactly bot/update_id/update_type/update, bot from the route, type the update's own key, "
        "update the object sent, job type from that type",
    )  # fmt: skip
    honest: dict[tuple[str, str], bytes] = {}
    spliced: list[tuple[str, bytes]] = []
    next_id = 1
    for route, bot in ROUTES.items():
        other = "tgms" if bot == "main" else "main"
        for kind in ("message", "chat_join_request", "edited_message"):
            text = json.dumps(_honest(next_id, kind), separators=(",", ":"), ensure_ascii=False)
            honest[route, str(next_id)] = text.encode()
            for n, suffix in enumerate(SUFFIXES):
                bad = json.dumps(_honest(next_id + 1 + n, kind), separators=(",", ":"), ensure_ascii=False)
                spliced.append((route, (bad + suffix.format(other=other, id=next_id + 1 + n)).encode()))
            next_id += 1 + len(SUFFIXES)
    with webhook_process(db_url, tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30, headers={SECRET_HEADER: SECRET},
                                     trust_env=False) as client:  # fmt: skip
            sends = [client.post(route, content=body) for (route, _), body in honest.items()]
            sends += [client.post(route, content=body) for route, body in spliced]
            answers = await asyncio.gather(*sends)
            # Then each spliced body alone: in a batch of its own no other body's refusal can make
            # PostgreSQL refuse the batch, so it is the body's own check that must stop it.
            alone = [await client.post(route, content=body) for route, body in spliced]
    assert [a.status_code for a in answers[: len(honest)]] == [200] * len(honest)
    assert [a.status_code for a in answers[len(honest) :]] == [400] * len(spliced)
    assert [a.status_code for a in alone] == [400] * len(spliced)

    stored = _rows(
        db_url, "SELECT w.bot, w.update_id, j.job_type, j.payload FROM webhook_updates w JOIN jobs j USING (job_id)"
    )
    expected = {}
    for (route, _), body in honest.items():
        update = json.loads(body)
        kind = next(k for k in update if k != "update_id")
        job = "tgms_process_join_request" if kind == "chat_join_request" else "process_telegram_update"
        expected[ROUTES[route], update["update_id"]] = (job, {"bot": ROUTES[route], "update_id": update["update_id"],
                                                              "update_type": kind, "update": update})  # fmt: skip
    assert {(bot, uid): (job, payload) for bot, uid, job, payload in stored} == expected
    rec.measure("honest updates stored", len(honest))
    rec.measure("spliced bodies refused", len(spliced))
    rec.measure("jobs with a foreign key or bot", 0)


# ---------------------------------------------------------------------------------------- 11c

SLOW_TIMEOUT = 2.0
SLOW_BOUND = 15.0


async def _slow_client(port: int, head: bytes, drip: bytes) -> float:
    """Send `head`, then `drip` every 0.25 s, until the server closes the connection; seconds open."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head)
        while time.monotonic() - started < SLOW_BOUND:
            try:
                if await asyncio.wait_for(reader.read(65536), 0.25) == b"":
                    break
            except TimeoutError:
                pass
            try:
                writer.write(drip)
                await writer.drain()
            except ConnectionError:
                break
        return time.monotonic() - started
    finally:
        writer.close()


@pytest.mark.slow
async def test_slow_clients_are_cut_while_updates_flow(db_url: str, tmp_path: Path, scenario: ScenarioFactory) -> None:
    per_kind, rate, seconds = 10, 20, 4.0
    rec = scenario(
        "11c", "Hostile clients: slow connections",
        injected=f"to a webhook process with --request-timeout {SLOW_TIMEOUT:g} and --limit-concurrency 100: "
        f"{3 * per_kind} connections at once ({per_kind} silent, {per_kind} trickling header bytes, {per_kind} "
        f"trickling a body after the right secret, a byte every 0.25 s), while updates arrive at {rate}/s for "
        f"{seconds:g} s on other connections",
        checked=f"every slow connection closed by the server after the timeout (and before {SLOW_BOUND:g} s); every "
        "update answered 200 meanwhile and stored once; the server counts the closures in /metrics",
    )  # fmt: skip
    args = ("--request-timeout", str(SLOW_TIMEOUT), "--limit-concurrency", "100")
    with webhook_process(db_url, tmp_path, *args) as server:
        body_head = (f"POST /api/webhook HTTP/1.1\r\nHost: x\r\n{SECRET_HEADER}: {SECRET}\r\n"
                     "Content-Length: 5000\r\n\r\n{").encode()  # fmt: skip
        kinds = [(b"", b""), (b"POST /api/webhook HTTP/1.1\r\nHost: x\r\n", b"X"), (body_head, b" ")]
        slow = [asyncio.create_task(_slow_client(server.port, h, d)) for h, d in kinds for _ in range(per_kind)]
        latencies: list[float] = []
        statuses: list[int] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=30, headers={SECRET_HEADER: SECRET},
                                     trust_env=False) as client:  # fmt: skip
            started = time.monotonic()
            n = 0
            while time.monotonic() - started < seconds:
                n += 1
                update = {"update_id": n, "message": {"message_id": n, "date": 0, "chat": {"id": 1, "type": "private"}}}
                sent = time.monotonic()
                statuses.append((await client.post("/api/webhook", json=update)).status_code)
                latencies.append(time.monotonic() - sent)
                await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
        open_for = await asyncio.gather(*slow)
        metrics = httpx.get(f"{server.url}/metrics", trust_env=False).text
    assert statuses == [200] * len(statuses)
    assert _rows(db_url, "SELECT count(*), count(DISTINCT update_id) FROM webhook_updates") == [(n, n)]
    assert all(SLOW_TIMEOUT * 0.9 <= s < SLOW_BOUND for s in open_for), open_for
    assert f'tgms_webhook_connections_closed_total{{reason="request_timeout"}} {len(slow)}' in metrics
    rec.measure("slow connections", len(slow))
    rec.measure("longest open (s)", round(max(open_for), 2))
    rec.measure("updates answered 200 meanwhile", len(statuses))
    rec.measure("slowest update (ms)", round(max(latencies) * 1000, 1))


# ---------------------------------------------------------------------------------------- 11d


def _drop_after_sending(url: str, body: bytes, key: str) -> None:
    """POST and hang up at once, as a client whose timeout fired before the answer."""
    host, port = url.removeprefix("http://").split(":")
    head = (f"POST /api/tgms/send HTTP/1.1\r\nHost: {host}\r\nx-api-key: {ADMIN_KEY}\r\nIdempotency-Key: {key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)


@pytest.mark.slow
async def test_retried_broadcasts_are_sent_once(
    db_url: str, make_stack: StackFactory, scenario: ScenarioFactory
) -> None:
    groups, retries = 12, 6
    rec = scenario(
        "11d", "Hostile clients: retried admin requests",
        injected=f"POST /api/tgms/send with an Idempotency-Key whose client hangs up before the answer, then "
        f"{retries} retries with the same key and body at the same moment, and one with the same key and another "
        f"body; {groups} groups, a TGMS worker sending",
        checked="one broadcast row and one starting sender job; every retry answered 200 with the same body "
        "(Idempotent-Replayed), the other body 422 naming Idempotency-Key; at the simulator each group got exactly "
        "one sendMessage",
    )  # fmt: skip
    stack: Stack = make_stack(db_url, env={"TGMS_RATE_PER_SECOND": "50", "TGMS_GROUP_DELAY_SECONDS": "0",
                                           "TGMS_GROUP_MESSAGES_PER_MINUTE": "1000"})  # fmt: skip
    stack.start_worker("tgms")
    chats = managed_chats(stack, groups)
    assert stack.webhook_url is not None
    body = json.dumps({"text": "Retried announcement"}).encode()
    _drop_after_sending(stack.webhook_url, body, "op-42")
    headers = {"x-api-key": ADMIN_KEY, "Idempotency-Key": "op-42", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=stack.webhook_url, timeout=30, trust_env=False) as client:
        answers = await asyncio.gather(*(client.post("/api/tgms/send", content=body, headers=headers)
                                         for _ in range(retries)))  # fmt: skip
        other = await client.post("/api/tgms/send", json={"text": "Another"}, headers=headers)
    assert {a.status_code for a in answers} == {200}
    assert len({a.text for a in answers}) == 1
    assert other.status_code == 422 and other.json()["field"] == "Idempotency-Key"
    broadcast_id = answers[0].json()["broadcast_id"]
    finished = "SELECT status FROM broadcasts WHERE broadcast_id = %s AND status NOT IN ('pending', 'running')"
    assert stack.wait_for(lambda: stack.scalar(finished, (broadcast_id,)), timeout=60, what="broadcast done") == "done"
    assert stack.scalar("SELECT count(*) FROM broadcasts") == 1
    # One starting job (the sender's helpers carry a "helper" key: they belong to the same broadcast).
    starting = "SELECT count(*) FROM jobs WHERE job_type = 'tgms_send_to_groups' AND NOT payload ? 'helper'"
    assert stack.scalar(starting) == 1
    sends = stack.ok_sends()
    assert {chat: sends.get(chat, 0) for chat in chats} == dict.fromkeys(chats, 1)
    rec.measure("requests with the key", 1 + retries)
    rec.measure("replayed", sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers))
    rec.measure("broadcasts", 1)
    rec.measure("copies per group (max)", max(sends.values()))
