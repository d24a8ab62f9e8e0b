"""Queue benchmark: TGMS's queue vs pgqueuer and procrastinate, same PostgreSQL, same run.

1. Throughput: N no-op jobs enqueued, then drained by one worker process of each system (each in its
   own database on the same server). pgqueuer runs with its defaults (batch 10) on the psycopg driver,
   procrastinate with its defaults (concurrency 1); ours with its defaults for a TGMS worker plus
   a larger concurrency (a no-op job has nothing to wait on).
2. Pickup latency: a producer *process* enqueues one job at a time at a steady rate (200/s by default);
   latency = handler start - enqueue commit (both time.time() on this machine), p50/p99. NOTIFY, not
   polling, has to carry this.

Usage: ./dev.sh bench queue_bench [--jobs 10000] [--rate 200] [--seconds 10]
Uses TGMS_BENCH_DATABASE_URL when set, else a throwaway embedded PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import bench_server, fresh_database

from tests.support import percentile
from tgms_tui.backend import queue
from tgms_tui.backend.config import Settings
from tgms_tui.backend.db import migrate
from tgms_tui.backend.queue import Job, NewJob
from workers.runner import JobContext, Worker, WorkerOptions


# ----------------------------------------------------------------------------- TGMS
async def tgms_throughput(url: str, n: int) -> float:
    migrate(url)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for start in range(0, n, 5000):
            await queue.enqueue_many(conn, [NewJob("tgms_noop") for _ in range(start, min(n, start + 5000))])
        await conn.commit()
    done = asyncio.Event()
    count = 0

    async def noop(ctx: JobContext, job: Job) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    options = WorkerOptions(concurrency=500, batch_size=250, lease_seconds=60, poll_seconds=1)
    worker = Worker(url, "tgms", {"tgms_noop": noop}, Settings(database_url=url), options)
    t0 = time.perf_counter()
    task = asyncio.create_task(worker.run())
    await done.wait()
    worker.stop()
    await task  # includes flushing the last completions
    elapsed = time.perf_counter() - t0
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT count(*) FROM jobs WHERE status = 'done'")
        row = await cur.fetchone()
    assert row is not None and row[0] == n, f"only {row} done"
    return n / elapsed


async def tgms_latency(url: str, rate: float, seconds: float) -> list[float]:
    migrate(url)
    starts: dict[int, float] = {}

    async def handler(ctx: JobContext, job: Job) -> None:
        starts[job.job_id] = time.time()

    worker = Worker(url, "tgms", {"tgms_ping": handler}, Settings(database_url=url), WorkerOptions(concurrency=16))
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(1.0)
    commits = await run_producer(url, "tgms", rate, seconds)
    await asyncio.sleep(1.0)
    worker.stop()
    await task
    return [starts[j] - t for j, t in commits.items() if j in starts]


def _producer(url: str, system: str, rate: float, seconds: float, out: Any) -> None:
    async def main() -> dict[int, float]:
        commits: dict[int, float] = {}
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            if system == "pgqueuer":
                from pgqueuer.db import PsycopgDriver
                from pgqueuer.queries import Queries

                q = Queries(PsycopgDriver(conn))
            interval = 1.0 / rate
            t_next = time.perf_counter()
            end = t_next + seconds
            while t_next < end:
                await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
                if system == "tgms":
                    job_id = await queue.enqueue(conn, "tgms_ping")
                else:
                    (job_id,) = await q.enqueue("ping", None)
                commits[int(job_id)] = time.time()  # type: ignore[arg-type]
                t_next += interval
        return commits

    out.put(asyncio.run(main()))


async def run_producer(url: str, system: str, rate: float, seconds: float) -> dict[int, float]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_producer, args=(url, system, rate, seconds, out))
    proc.start()
    commits: dict[int, float] = await asyncio.to_thread(out.get)
    await asyncio.to_thread(proc.join)
    return commits


# ----------------------------------------------------------------------------- pgqueuer
async def pgqueuer_throughput(url: str, n: int) -> float:
    from pgqueuer.db import PsycopgDriver
    from pgqueuer.domain.types import QueueExecutionMode
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        driver = PsycopgDriver(conn)
        await Queries(driver).install()
        for start in range(0, n, 5000):
            k = min(n, start + 5000) - start
            await Queries(driver).enqueue(["noop"] * k, [None] * k, [0] * k)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        qm = QueueManager(Queries(PsycopgDriver(conn)))

        @qm.entrypoint("noop")
        async def noop(job: Any) -> None:
            return None

        t0 = time.perf_counter()
        await qm.run(mode=QueueExecutionMode.drain)
        return n / (time.perf_counter() - t0)


async def pgqueuer_latency(url: str, rate: float, seconds: float) -> list[float]:
    from pgqueuer.db import PsycopgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await Queries(PsycopgDriver(conn)).install()
    starts: dict[int, float] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        qm = QueueManager(Queries(PsycopgDriver(conn)))

        @qm.entrypoint("ping")
        async def ping(job: Any) -> None:
            starts[int(job.id)] = time.time()

        task = asyncio.create_task(qm.run())
        await asyncio.sleep(1.0)
        commits = await run_producer(url, "pgqueuer", rate, seconds)
        await asyncio.sleep(1.0)
        qm.shutdown.set()
        await task
    return [starts[j] - t for j, t in commits.items() if j in starts]


# ----------------------------------------------------------------------------- procrastinate
async def procrastinate_throughput(url: str, n: int) -> float:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for start in range(0, n, 5000):
            k = min(n, start + 5000) - start
            await noop.batch_defer_async(*({} for _ in range(k)))
        t0 = time.perf_counter()
        await app.run_worker_async(wait=False, install_signal_handlers=False)
        return n / (time.perf_counter() - t0)


# ----------------------------------------------------------------------------- main
def pct(values: list[float], q: float) -> float:
    """A percentile in milliseconds."""
    return percentile(values, q) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-procrastinate", action="store_true")
    args = parser.parse_args()
    with bench_server() as server:
        asyncio.run(compare(server.url, args))


async def compare(server: str, args: argparse.Namespace) -> None:
    rows: list[tuple[str, str, str]] = []
    results: dict[str, float] = {}
    runs: list[tuple[str, Callable[[str, int], Awaitable[float]]]] = [
        ("tgms", tgms_throughput),
        ("pgqueuer", pgqueuer_throughput),
    ]
    if not args.skip_procrastinate:
        runs.append(("procrastinate", procrastinate_throughput))
    for name, fn in runs:
        url = fresh_database(server, f"bench_{name}")
        rate = await fn(url, args.jobs)
        results[name] = rate
        rows.append((name, f"{args.jobs} no-op jobs drained", f"{rate:,.0f} jobs/s"))
        print(f"  {name}: {rate:,.0f} jobs/s", file=sys.stderr)

    lat_ours = await tgms_latency(fresh_database(server, "bench_lat_tgms"), args.rate, args.seconds)
    lat_pgq = await pgqueuer_latency(fresh_database(server, "bench_lat_pgq"), args.rate, args.seconds)
    for name, lat in (("tgms", lat_ours), ("pgqueuer", lat_pgq)):
        rows.append(
            (
                name,
                f"pickup latency at {args.rate:.0f} jobs/s ({len(lat)} jobs)",
                f"p50 {pct(lat, 0.5):.1f} ms  p99 {pct(lat, 0.99):.1f} ms  mean {statistics.mean(lat) * 1000:.1f} ms",
            )
        )

    width = max(len(r[1]) for r in rows)
    print(f"\n{'system':<14} {'measure':<{width}}  result")
    print("-" * (width + 50))
    for r in rows:
        print(f"{r[0]:<14} {r[1]:<{width}}  {r[2]}")
    ratios = [f"tgms/pgqueuer throughput {results['tgms'] / results['pgqueuer']:.2f}x"]
    if "procrastinate" in results:
        ratios.append(f"tgms/procrastinate throughput {results['tgms'] / results['procrastinate']:.2f}x")
    ratios.append(f"latency p50 tgms {pct(lat_ours, 0.5):.1f} ms vs pgqueuer {pct(lat_pgq, 0.5):.1f} ms")
    ratios.append(f"p99 tgms {pct(lat_ours, 0.99):.1f} ms vs pgqueuer {pct(lat_pgq, 0.99):.1f} ms")
    print("\nratios: " + "; ".join(ratios))


if __name__ == "__main__":
    main()
