"""Webhook intake benchmark: TGMS's durable /api/webhook against a bare Starlette route, same run.

Both servers run the same way (their own uvicorn process, uvloop + httptools, no access log, one
worker) and are driven by the same load generator, one server at a time so they never share the CPU
with each other:

- max throughput: C keep-alive connections sending back to back for D seconds, at each of the
  concurrency levels given (default 64 and 100: Telegram opens at most 100 connections per bot,
  setWebhook's max_connections); a server's max throughput in a round is its best level. A bare
  route is CPU-bound at any level; a durable, group-committing one is latency-bound until enough
  requests are in flight to fill its batches, so a single level would measure Little's law
  (connections / latency), not the server's ceiling;
- latency: an open-loop load of R requests/s (each latency counted from its scheduled send time, so a
  stalled server cannot hide its queueing), p50/p99.

For TGMS every 200 means the update and its job were committed; the script checks afterwards that the
jobs table holds exactly one job per accepted update. The load generator speaks raw HTTP/1.1 over
asyncio streams (uvloop), which is far cheaper per request than an HTTP client library, so it is not
what limits the numbers on a 2-core machine.

    python bench/webhook_bench.py [--duration 5] [--connections 64,100] [--rate 500]

Database: TGMS_BENCH_DATABASE_URL (a database that may be written to; the script creates and drops its
own database on that server), else a throwaway embedded PostgreSQL (pgserver) in a temp directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from _common import bench_server, migrated_database
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.support import free_port, stop_processes

SECRET = "bench-secret-0123456789"
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the baseline server


def bare_app() -> Starlette:
    """The baseline: a Starlette route that only answers 200 (uvicorn factory)."""

    async def ok(request: Request) -> Response:
        return Response(status_code=200)

    return Starlette(routes=[Route("/api/webhook", ok, methods=["POST"])])


# ---------------------------------------------------------------- load generator


def update_body(update_id: int) -> bytes:
    """A real-shaped group message update (~500 bytes); every 10th is a join request."""
    if update_id % 10 == 0:
        update = {
            "update_id": update_id,
            "chat_join_request": {
                "chat": {"id": -1001234567890, "title": "Bench group", "type": "supergroup"},
                "from": {"id": update_id, "is_bot": False, "first_name": "Ann", "username": "ann"},
                "user_chat_id": update_id,
                "date": 1760000000,
                "invite_link": {
                    "invite_link": "https://t.me/+AbCdEf",
                    "creator": {"id": 1, "is_bot": False, "first_name": "Owner"},
                    "creates_join_request": True,
                    "is_primary": False,
                    "is_revoked": False,
                },
            },
        }
    else:
        update = {
            "update_id": update_id,
            "message": {
                "message_id": update_id,
                "from": {"id": 777001, "is_bot": False, "first_name": "Bob", "username": "bob", "language_code": "en"},
                "chat": {"id": -1001234567890, "title": "Bench group", "type": "supergroup"},
                "date": 1760000000,
                "text": "hello everyone, this is a benchmark message with a #tag and a link https://example.org",
                "entities": [
                    {"offset": 46, "length": 4, "type": "hashtag"},
                    {"offset": 67, "length": 19, "type": "url"},
                ],
            },
        }
    return json.dumps(update, separators=(",", ":")).encode()


_MARK = 987654321987


def _templates() -> tuple[list[bytes], list[bytes]]:
    """Each update shape split around its update_id (which also appears in derived fields), so a
    request costs the generator a join, not a json.dumps: it must not steal the servers' CPU."""
    return update_body(_MARK * 10 + 1).split(str(_MARK * 10 + 1).encode()), update_body(_MARK * 10).split(
        str(_MARK * 10).encode()
    )


_MESSAGE_PARTS, _JOIN_PARTS = _templates()


def request_bytes(port: int, update_id: int) -> bytes:
    parts = _JOIN_PARTS if update_id % 10 == 0 else _MESSAGE_PARTS
    body = str(update_id).encode().join(parts)
    head = (
        f"POST /api/webhook HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-Telegram-Bot-Api-Secret-Token: {SECRET}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
            break
    if length:
        await reader.readexactly(length)
    return status


@dataclass
class Result:
    server: str
    mode: str
    sent: int = 0
    ok: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)  # seconds of CPU per process group

    def cpu_us(self, who: str) -> float:
        return self.cpu.get(who, 0.0) / self.ok * 1e6 if self.ok else float("nan")

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000


class CpuMeter:
    """CPU seconds used by the server process, the PostgreSQL processes and this load generator:
    what one request costs, which (unlike req/s) hardly depends on what else the machine runs."""

    def __init__(self, server_pid: int, postgres_pid: int | None) -> None:
        import psutil

        self._server = psutil.Process(server_pid)
        self._postgres = psutil.Process(postgres_pid) if postgres_pid else None

    def _sample(self) -> dict[str, float]:
        def used(proc: object) -> float:
            times = proc.cpu_times()  # type: ignore[attr-defined]
            return float(times.user + times.system)

        sample = {"server": used(self._server), "generator": time.process_time()}
        if self._postgres is not None:
            total = used(self._postgres)
            for child in self._postgres.children(recursive=True):
                with contextlib.suppress(Exception):
                    total += used(child)
            sample["postgres"] = total
        return sample

    @contextlib.contextmanager
    def measure(self, res: Result) -> Iterator[None]:
        before = self._sample()
        yield
        after = self._sample()
        res.cpu = {k: after[k] - before[k] for k in after if k in before}


class IdSource:
    def __init__(self, start: int) -> None:
        self.next = start

    def take(self) -> int:
        self.next += 1
        return self.next


async def closed_loop(port: int, connections: int, duration: float, ids: IdSource, res: Result) -> None:
    stop_at = time.perf_counter() + duration

    async def one_connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop_at:
                payload = request_bytes(port, ids.take())
                started = time.perf_counter()
                writer.write(payload)
                res.sent += 1
                status = await read_response(reader)
                res.latencies.append(time.perf_counter() - started)
                if status == 200:
                    res.ok += 1
                else:
                    res.errors += 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(connections)))
    res.seconds = time.perf_counter() - began


async def open_loop(port: int, rate: float, duration: float, ids: IdSource, res: Result, pool_size: int = 64) -> None:
    """Send at a fixed rate regardless of the server; latency from each request's scheduled time."""
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(pool_size):
        idle.put_nowait(await asyncio.open_connection("127.0.0.1", port))
    interval = 1.0 / rate
    total = int(rate * duration)
    tasks: set[asyncio.Task[None]] = set()

    async def fire(scheduled: float, update_id: int) -> None:
        conn = await idle.get()
        reader, writer = conn
        writer.write(request_bytes(port, update_id))
        res.sent += 1
        status = await read_response(reader)
        res.latencies.append(time.perf_counter() - scheduled)
        if status == 200:
            res.ok += 1
        else:
            res.errors += 1
        idle.put_nowait(conn)

    began = time.perf_counter()
    for n in range(total):
        scheduled = began + n * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(fire(scheduled, ids.take()))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await asyncio.gather(*tasks)
    res.seconds = time.perf_counter() - began
    while not idle.empty():
        idle.get_nowait()[1].close()


# ---------------------------------------------------------------- servers and database


@contextlib.contextmanager
def uvicorn_process(factory: str, port: int, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        factory,
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--no-proxy-headers",
        "--log-level",
        "warning",
        "--app-dir",
        str(ROOT / "bench"),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **env})
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{factory} exited with {proc.returncode}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.05)
        else:
            raise TimeoutError(f"{factory} did not start")
        yield proc
    finally:
        stop_processes([proc], signal.SIGINT, grace=15)


def count_jobs(url: str) -> tuple[int, int, int]:
    """Jobs, stored updates, and stored updates that made no job (group messages: member activity,
    recorded on intake)."""
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM webhook_updates),"
            " (SELECT count(*) FROM webhook_updates WHERE job_id IS NULL)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def batch_summary(port: int) -> str:
    """Group commit as the server saw it (from its /metrics)."""
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith(
            ("tgms_webhook_batch_size_sum", "tgms_webhook_batch_size_count", "tgms_webhook_batch_failures_total")
        ):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    commits = values.get("tgms_webhook_batch_size_count", 0.0)
    mean = values.get("tgms_webhook_batch_size_sum", 0.0) / commits if commits else 0.0
    return (
        f"group commit: {commits:.0f} transactions, {mean:.1f} updates per transaction on average, "
        f"{values.get('tgms_webhook_batch_failures_total', 0.0):.0f} failed"
    )


# ---------------------------------------------------------------- main


async def measure(ports: dict[str, int], meters: dict[str, CpuMeter], args: argparse.Namespace) -> list[Result]:
    """Warm both servers, then alternate them round by round (bare, tgms, bare, tgms...) so that
    background load on a shared machine hits both alike."""
    ids = {"bare": IdSource(0), "tgms": IdSource(10_000_000)}
    results: list[Result] = []
    for name, port in ports.items():
        warm = Result(name, "warm-up")
        await closed_loop(port, 8, 1.0, ids[name], warm)
        results.append(warm)
    for n in range(args.rounds):
        for name, port in ports.items():
            for connections in args.connections:
                peak = Result(name, f"max {connections}c #{n + 1}")
                with meters[name].measure(peak):
                    await closed_loop(port, connections, args.duration, ids[name], peak)
                results.append(peak)
                await asyncio.sleep(0.3)
    for n in range(args.rounds):
        for name, port in ports.items():
            steady = Result(name, f"{args.rate:g}/s #{n + 1}")
            with meters[name].measure(steady):
                await open_loop(port, args.rate, args.duration, ids[name], steady)
            results.append(steady)
            await asyncio.sleep(0.3)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per server and load (default 3)")
    parser.add_argument(
        "--connections",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[64, 100],
        help="comma-separated concurrency levels for max throughput (default 64,100)",
    )
    parser.add_argument("--rate", type=float, default=500.0, help="offered load for latency, req/s (default 500)")
    args = parser.parse_args(argv)

    import uvloop

    with bench_server() as server, migrated_database(server.url, f"tgms_bench_{uuid.uuid4().hex[:8]}") as url:
        postgres_pid = server.pid
        bare_port, ours_port = free_port(), free_port()
        env = {"DATABASE_URL": url, "TGMS_WEBHOOK_SECRET": SECRET, "TGMS_LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)}
        with (
            uvicorn_process("webhook_bench:bare_app", bare_port, {}) as bare_proc,
            uvicorn_process("webhook_server.app:app_from_env", ours_port, env) as ours_proc,
        ):
            meters = {"bare": CpuMeter(bare_proc.pid, None), "tgms": CpuMeter(ours_proc.pid, postgres_pid)}
            results = uvloop.run(measure({"bare": bare_port, "tgms": ours_port}, meters, args))
            batch_line = batch_summary(ours_port)
        jobs, updates, without_job = count_jobs(url)

    accepted = sum(r.ok for r in results if r.server == "tgms")
    print(
        f"{'server':<6} {'load':<16} {'200s':>7} {'errors':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'CPU us/request: server':>23} {'postgres':>8} {'loadgen':>8}"
    )
    for r in results:
        if r.mode != "warm-up":
            pg = f"{r.cpu_us('postgres'):>8.0f}" if "postgres" in r.cpu else f"{'-':>8}"
            print(
                f"{r.server:<6} {r.mode:<16} {r.ok:>7} {r.errors:>6} {r.rate:>7.0f} {r.pct(0.50):>7.2f} "
                f"{r.pct(0.99):>7.2f} {r.cpu_us('server'):>23.0f} {pg} {r.cpu_us('generator'):>8.0f}"
            )

    def runs(server: str, kind: str) -> list[Result]:
        return [r for r in results if r.server == server and r.mode.startswith(kind)]

    def best_per_round(server: str) -> list[Result]:
        """Each round's best concurrency level: the server's max throughput in that round."""
        rounds: dict[str, Result] = {}
        for r in runs(server, "max"):
            key = r.mode.rsplit("#", 1)[1]
            if key not in rounds or r.rate > rounds[key].rate:
                rounds[key] = r
        return [rounds[k] for k in sorted(rounds, key=int)]

    peaks = {name: best_per_round(name) for name in ("bare", "tgms")}
    ratios = [t.rate / b.rate for b, t in zip(peaks["bare"], peaks["tgms"], strict=True) if b.rate]
    steady = runs("tgms", f"{args.rate:g}/s")
    merged = Result("tgms", "steady", latencies=[x for r in steady for x in r.latencies])
    print(
        f"durable check: {updates} webhook_updates rows ({jobs} with a job, {without_job} recorded on intake) for "
        f"{accepted} updates answered 200 (warm-up included): "
        f"{'OK' if updates == accepted == jobs + without_job else 'MISMATCH'}"
    )
    print(batch_line)
    bare_rate = statistics.median(r.rate for r in peaks["bare"])
    ours_rate = statistics.median(r.rate for r in peaks["tgms"])
    best = {name: ", ".join(r.mode.split()[1] for r in peaks[name]) for name in peaks}
    print(
        f"max throughput (each round's best of {', '.join(f'{c}c' for c in args.connections)}), median of "
        f"{args.rounds} rounds: bare {bare_rate:.0f}/s, tgms durable {ours_rate:.0f}/s; "
        f"per-round ratios {', '.join(f'{x:.2f}' for x in ratios)}; best levels: bare {best['bare']}, "
        f"tgms {best['tgms']}"
    )
    for connections in args.connections:
        level = {name: runs(name, f"max {connections}c ") for name in ("bare", "tgms")}
        at_level = [t.rate / b.rate for b, t in zip(level["bare"], level["tgms"], strict=True) if b.rate]
        print(
            f"  at {connections} connections only: ratios {', '.join(f'{x:.2f}' for x in at_level)} "
            f"(median {statistics.median(at_level):.2f})"
        )

    def cpu_per_request(server: str) -> float:
        """Server + PostgreSQL + load generator CPU per request: on this machine all three share the cores."""
        return statistics.median(
            r.cpu_us("server") + r.cpu_us("generator") + (r.cpu_us("postgres") if "postgres" in r.cpu else 0.0)
            for r in peaks[server]
        )

    bare_cpu, ours_cpu = cpu_per_request("bare"), cpu_per_request("tgms")
    print(
        f"CPU per request at max load (server + postgres + load generator): bare {bare_cpu:.0f} us, "
        f"tgms {ours_cpu:.0f} us; "
        f"on an otherwise idle machine where CPU is the limit, that predicts a ratio near {bare_cpu / ours_cpu:.2f}"
    )
    print(
        f"latency at {args.rate:g}/s offered, all rounds: tgms p50 {merged.pct(0.5):.2f} ms, "
        f"p99 {merged.pct(0.99):.2f} ms (target <= 25 ms)"
    )
    print(f"ratio durable/bare max throughput: {statistics.median(ratios):.2f} (target >= 0.50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
