"""What the test harnesses and the benchmarks share, kept once so that a fix reaches every caller.

Ports, polling until something holds, throwaway PostgreSQL servers, stopping child processes, a clean
simulator world, and the two small statistics the load tests and benchmarks report. Nothing here
knows a TGMS role: roles are what the tests exercise, through their own fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

if TYPE_CHECKING:
    from telegram_sim.server import SimServer

T = TypeVar("T")


# ---------------------------------------------------------------------------- network


def free_port() -> int:
    """A loopback port nothing listens on right now (the caller binds it soon after)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """Whether GET `url` answers 200; a server that is not up yet is simply not OK."""
    try:
        return httpx.get(url, timeout=timeout, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------------------- waiting


def poll_until(
    check: Callable[[], T],
    *,
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
    detail: Callable[[], str] = str,
) -> T:
    """Call `check` until it returns something truthy and return that; on timeout fail naming `what`,
    followed by `detail()` (e.g. the log tails of the processes involved)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{detail()}".rstrip())
        time.sleep(interval)


async def wait_until(
    check: Callable[[], Awaitable[object]], what: str = "condition", timeout: float = 30.0, interval: float = 0.05
) -> None:
    """The asynchronous `poll_until`: await `check()` until it is truthy, without blocking the loop."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


# ---------------------------------------------------------------------------- PostgreSQL


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def start_postgres(directory: Path) -> Any:
    """A pgserver cluster in `directory`/pgdata, started; the caller owns its cleanup.

    `directory` should be short (under /tmp): the server's Unix socket path is limited to ~107 bytes.
    """
    os.environ.setdefault("XDG_RUNTIME_DIR", str(directory / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pgserver's imports warn about its dependencies
        import pgserver

        return pgserver.get_server(directory / "pgdata", cleanup_mode="delete")


@contextlib.contextmanager
def throwaway_postgres(prefix: str = "tgms-pg-") -> Iterator[Any]:
    """A PostgreSQL server of its own for the duration of the block, its files removed afterwards.

    Outside pytest's tmp_path on purpose: as root the server runs as the 'pgserver' user, and a pytest
    session starting elsewhere resets /tmp/pytest-of-root to mode 700 under it.
    """
    directory = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        server = start_postgres(directory)
        try:
            yield server
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------------------- processes


def stop_processes(procs: Iterable[subprocess.Popen[Any]], sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
    """Signal every live process at once, give them `grace` seconds together, then kill what is left."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(sig)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ---------------------------------------------------------------------------- simulator


def reset_simulator(server: SimServer, **config: Any) -> SimServer:
    """A clean world on a running simulator (its state and webhook statistics reset, webhooks
    included), with Telegram's flood limits off unless `config` (SimConfig fields) says otherwise."""
    from telegram_sim.config import SimConfig

    server.state.reset(clear_webhooks=True)
    server.state.config.update(SimConfig(**{"enforce_flood_limits": False, **config}).as_dict())
    server.dispatcher.reset_stats()
    return server


def simulator_fixtures(*, bots: int, seed: int, **config: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """The fixtures `sim_server` (one real simulator per test module, over HTTP) and `sim` (that
    simulator, reset for each test with `config`). A conftest or test module assigns both:
    `sim_server, sim = simulator_fixtures(bots=2, seed=7)`."""
    import pytest

    from telegram_sim.server import SimServer

    @pytest.fixture(scope="module")
    def sim_server() -> Iterator[SimServer]:
        with SimServer(bots=bots, seed=seed) as server:
            yield server

    @pytest.fixture
    def sim(sim_server: SimServer) -> SimServer:
        return reset_simulator(sim_server, **config)

    return sim_server, sim


# ---------------------------------------------------------------------------- statistics


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0..1) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def max_in_window(times: Iterable[float], window: float = 1.0) -> int:
    """The most events in any sliding half-open window [t, t + window), not just aligned seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
