"""SIGTERM (what systemd, Docker and `kill` send) is a clean stop for every `tgms` process: real
processes, real signals, one embedded PostgreSQL shared through a throwaway TGMS_DATA_DIR.

The embedded server lists the pids of the processes using it and the last one to leave stops it. A
process ended by SIGTERM's default action runs no exit hook, so its pid stayed listed and the server
was never stopped again by anyone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.demo.helpers import assert_nothing_left, demo_data_dir
from tests.demo.test_demo_tui import Terminal
from tests.support import free_port, http_ok, poll_until
from tgms_tui.backend import entrypoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data directory outside pytest's tmp_path (as root, PostgreSQL runs as 'pgserver', which must
    pass through it)."""
    path = Path(tempfile.mkdtemp(prefix="tgms-term-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path / "d"
    finally:
        pgdata = path / "d" / "pgdata"
        if (pgdata / "postmaster.pid").exists():
            _tgms(path / "d", "db", "stop")
        shutil.rmtree(path, ignore_errors=True)


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "DATABASE_URL", "BOT_TOKEN"))}
    env["TGMS_DATA_DIR"] = str(data)
    return env


def _tgms(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", *args],
        cwd=ROOT,
        env=_env(data),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _start(data: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tgms_tui.commands.cli", *args],
        cwd=ROOT,
        env=_env(data),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _handles(data: Path) -> list[int]:
    try:
        return [int(p) for p in json.loads((data / "pgdata" / ".handle_pids.json").read_text())]
    except (OSError, ValueError):
        return []


def _server_running(data: Path) -> bool:
    return (data / "pgdata" / "postmaster.pid").exists()


def _wait_listed(data: Path, *procs: subprocess.Popen[str]) -> None:
    def listed() -> bool:
        for proc in procs:
            assert proc.poll() is None, proc.communicate()[1][-2000:]
        return {p.pid for p in procs} <= set(_handles(data))

    poll_until(listed, timeout=90, what="every process listed as a user of the embedded server")


def _terminate(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)
    return code


def test_the_last_process_stopped_by_sigterm_stops_the_embedded_server(data_dir: Path) -> None:
    port = free_port()
    webhook = _start(data_dir, "webhook", "--insecure-no-secret", "--port", str(port))
    worker = _start(data_dir, "worker", "main", "--grace", "2")
    try:
        _wait_listed(data_dir, webhook, worker)
        poll_until(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), timeout=60, what="the webhook serving")

        assert _terminate(webhook) == 0, webhook.communicate()[1][-2000:]
        assert _handles(data_dir) == [worker.pid]
        assert _server_running(data_dir)  # the worker still uses it

        assert _terminate(worker) == 0, worker.communicate()[1][-2000:]
        assert _handles(data_dir) == []
        poll_until(lambda: not _server_running(data_dir), timeout=30, what="the embedded server stopped")
    finally:
        for proc in (webhook, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def test_a_killed_process_is_forgotten_so_the_last_live_one_still_stops_the_server(data_dir: Path) -> None:
    killed = _start(data_dir, "worker", "tgms")
    try:
        _wait_listed(data_dir, killed)
    finally:
        killed.kill()  # SIGKILL: no exit hook can run
        killed.wait(10)
    assert _handles(data_dir) == [killed.pid]
    survivor = _start(data_dir, "worker", "main", "--grace", "2")
    try:
        _wait_listed(data_dir, survivor)
        assert _handles(data_dir) == [survivor.pid]  # the dead one was dropped on joining
        code = _terminate(survivor)
        assert code in (0, 143), survivor.communicate()[1][-2000:]  # running (0) or still starting (143)
    finally:
        if survivor.poll() is None:
            survivor.kill()
    poll_until(lambda: not _server_running(data_dir), timeout=30, what="the embedded server stopped")


def test_the_tui_quits_on_sigterm_and_leaves_the_list(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tgms db url` pins the server first: it stays up, but the TUI is no longer listed."""
    assert _tgms(data_dir, "db", "url").returncode == 0
    for name, value in _env(data_dir).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    tui = Terminal([sys.executable, "-m", "tgms_tui.commands.cli", "tui"])
    try:
        tui.wait_for("Groups", timeout=90)
        assert tui.process.pid in _handles(data_dir)
        tui.process.send_signal(signal.SIGTERM)
        assert tui.process.wait(30) == 0  # the app quit as `q` does
    finally:
        tui.close()
    assert _handles(data_dir) == []
    assert _server_running(data_dir)  # pinned by `db url` until `db stop`
    stop = _tgms(data_dir, "db", "stop")
    assert (stop.returncode, stop.stdout.strip(), stop.stderr) == (0, "embedded PostgreSQL stopped", "")


def test_the_simulator_exits_0_on_sigterm() -> None:
    for argv in (["-m", "tgms_tui.commands.cli", "sim"], ["-m", "telegram_sim"]):
        port = free_port()
        sim = subprocess.Popen(
            [sys.executable, *argv, "--port", str(port), "--groups", "0"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            health = f"http://127.0.0.1:{port}/_sim/health"
            poll_until(lambda: http_ok(health), timeout=30, what="the simulator")  # noqa: B023
            assert _terminate(sim) == 0, (argv, sim.communicate()[1][-2000:])
        finally:
            if sim.poll() is None:
                sim.kill()


def test_sigterm_while_starting_exits_143_and_leaves_nothing_listed(data_dir: Path) -> None:
    """A signal before the role took it over (here: while the embedded server starts) unwinds too."""
    worker = _start(data_dir, "worker", "main")
    try:
        poll_until(lambda: worker.pid in _handles(data_dir) or worker.poll() is not None, timeout=90, what="joined")
        # The worker may already be running its loop (exit 0) or still migrating (143): both are clean.
        assert _terminate(worker) in (0, 143)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert _handles(data_dir) == []
    poll_until(lambda: not _server_running(data_dir), timeout=30, what="the embedded server stopped")


@pytest.mark.slow  # a whole demo
def test_the_demo_stops_everything_on_sigterm() -> None:
    with demo_data_dir() as data:
        demo = subprocess.Popen(
            [sys.executable, "-m", "tgms_tui.commands.cli", "demo", "--headless", "--groups", "4",
             "--data-dir", str(data)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        demo_dir = (data / "demo").resolve()
        try:
            poll_until(lambda: _handles(demo_dir) != [] or demo.poll() is not None, timeout=120, what="the demo")
            deadline = time.monotonic() + 120
            while demo.poll() is None and time.monotonic() < deadline:
                if "groups registered" in _read_log(demo_dir):
                    break
                time.sleep(0.2)
            assert _terminate_slowly(demo) == 0
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait(10)
        assert _handles(demo_dir) == []
        assert_nothing_left([], [], demo_dir)


def _read_log(demo_dir: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in demo_dir.glob("logs/run-*/demo.log"))


def _terminate_slowly(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(120)  # the demo drains its queued work before stopping


def test_an_error_while_unwinding_from_sigterm_still_exits_as_stopped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A cleanup that fails because the stop cut it short (a connection half open, a task cut mid-step)
    is reported in one line but exits with the stop's status, not as a crash (1)."""
    monkeypatch.setattr(entrypoint, "_terminated_by", None)
    caplog.set_level(logging.INFO)  # at DEBUG the entry point re-raises, for the traceback

    def stopped_mid_cleanup() -> int:
        try:
            entrypoint._terminate(signal.SIGTERM, None)  # what the SIGTERM handler does
        finally:
            raise RuntimeError("pool closed while opening a connection")
        return 0

    def plain_crash() -> int:
        raise RuntimeError("a real bug")

    assert entrypoint.run_entry_point(plain_crash) == 1
    assert entrypoint.run_entry_point(stopped_mid_cleanup) == 128 + signal.SIGTERM
