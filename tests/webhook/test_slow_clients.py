"""Slow clients against a real `python -m webhook_server`: a connection that sends nothing, trickles its
headers, or trickles a body after a valid secret is closed once `--request-timeout` has passed, while
normal requests are served meanwhile; oversized headers get 431; beyond `--limit-concurrency` new
requests get 503 at once, and the slots come back when the slow connections are cut."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import httpx

from .conftest import ADMIN_KEY, SECRET, SECRET_HEADERS
from .process import webhook_process

TIMEOUT = 1.0
BOUND = 8.0  # far above the timeout (a loaded machine), far below "never"

UPDATE = json.dumps({"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}})


async def _trickle(port: int, head: bytes, drip: bytes) -> float:
    """Send `head`, then `drip` every 0.2 s until the server closes the connection (or BOUND passes);
    the seconds it stayed open."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if head:
            writer.write(head)
        while time.monotonic() - started < BOUND:
            try:
                data = await asyncio.wait_for(reader.read(65536), 0.2)
            except TimeoutError:
                data = None
            if data == b"":
                return time.monotonic() - started  # closed by the server
            if drip:
                try:
                    writer.write(drip)
                    await writer.drain()
                except ConnectionError:
                    return time.monotonic() - started
        return float("inf")
    finally:
        writer.close()


async def test_slow_connections_are_closed_and_others_served(db_url: str, tmp_path: Path) -> None:
    with webhook_process(db_url, tmp_path, "--request-timeout", str(TIMEOUT), "--limit-concurrency", "20") as server:
        port = server.port
        webhook_head = (
            f"POST /api/webhook HTTP/1.1\r\nHost: x\r\nX-Telegram-Bot-Api-Secret-Token: {SECRET}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        ).encode()
        admin_head = (
            f"POST /api/tgms/send HTTP/1.1\r\nHost: x\r\nx-api-key: {ADMIN_KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"
        ).encode()
        slow = {
            "silent": _trickle(port, b"", b""),
            "trickled headers": _trickle(port, b"POST /api/webhook HTTP/1.1\r\nHost: x\r\n", b"X"),
            "trickled webhook body after the secret": _trickle(port, webhook_head, b" "),
            "trickled admin body after the key": _trickle(port, admin_head, b" "),
        }
        tasks = {name: asyncio.create_task(coro) for name, coro in slow.items()}
        await asyncio.sleep(0.3)
        async with httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as client:
            served = await client.post("/api/webhook", content=UPDATE, headers=SECRET_HEADERS)
            assert served.status_code == 200
            # Keep-alive requests that take their time between requests are not cut: only a request
            # that arrives too slowly is.
            await asyncio.sleep(TIMEOUT * 0.6)
            assert (await client.get("/healthz")).status_code == 200
            await asyncio.sleep(TIMEOUT * 0.6)
            assert (await client.get("/healthz")).status_code == 200
        open_for = {name: await task for name, task in tasks.items()}
        for name, seconds in open_for.items():
            assert TIMEOUT * 0.9 <= seconds < BOUND, (name, seconds)
        metrics = httpx.get(f"{server.url}/metrics", trust_env=False).text
    assert 'tgms_webhook_connections_closed_total{reason="request_timeout"} 4' in metrics
    assert "no whole request within 1s" in server.output()


def test_oversized_headers_get_431(db_url: str, tmp_path: Path) -> None:
    with webhook_process(db_url, tmp_path) as server:
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"a" * 100_000 + b"\r\n\r\n"
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            try:
                for start in range(0, len(head), 8192):  # several reads, as a real client's would be
                    sock.sendall(head[start : start + 8192])
                    time.sleep(0.002)
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert httpx.get(f"{server.url}/healthz", trust_env=False).status_code == 200


async def test_limit_concurrency_answers_503_until_slow_connections_are_cut(db_url: str, tmp_path: Path) -> None:
    limit = 4
    args = ("--request-timeout", str(TIMEOUT), "--limit-concurrency", str(limit))
    with webhook_process(db_url, tmp_path, *args) as server:
        idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(limit)]
        try:
            await asyncio.sleep(0.1)
            async with httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as client:
                refused = await client.get("/healthz")
                assert refused.status_code == 503
            started = time.monotonic()
            while True:  # the idle connections are cut after TIMEOUT: the slots come back
                async with httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as client:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                assert time.monotonic() - started < BOUND, "the slots never came back"
                await asyncio.sleep(0.1)
            for reader, _ in idle:
                assert await asyncio.wait_for(reader.read(), BOUND) == b""  # closed by the server
        finally:
            for _, writer in idle:
                writer.close()


async def test_the_deadline_reaches_every_worker_process(db_url: str, tmp_path: Path) -> None:
    """With --workers N uvicorn spawns new interpreters: the protocol and its timeout must reach them."""
    with webhook_process(db_url, tmp_path, "--workers", "2", "--request-timeout", str(TIMEOUT)) as server:
        open_for = await asyncio.gather(*(_trickle(server.port, b"", b"") for _ in range(6)))
        assert all(TIMEOUT * 0.9 <= s < BOUND for s in open_for), open_for
        update = UPDATE.replace('"update_id": 1', '"update_id": 2')
        async with httpx.AsyncClient(base_url=server.url, timeout=10, trust_env=False) as client:
            assert (await client.post("/api/webhook", content=update, headers=SECRET_HEADERS)).status_code == 200
