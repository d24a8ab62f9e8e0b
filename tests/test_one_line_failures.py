"""Failures an operator meets first are one line on stderr and a non-zero exit, never a traceback or
uvicorn's log: a missing webhook secret (found before anything starts), a port in use, an unreachable
database or a bad DATABASE_URL (password never shown). `tgms db stop` warns about nothing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[1]
SECRET = "one-line-webhook-secret-x7Q"
PASSWORD = "sekret-db-password-9"


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "DATABASE_URL", "XDG_RUNTIME"))}
    return subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tgms-1line-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path / "d"
    finally:
        if (path / "d" / "pgdata" / "postmaster.pid").exists():
            run("db", "stop", TGMS_DATA_DIR=str(path / "d"))
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_webhook_checks_its_secret_before_starting_anything(data_dir: Path) -> None:
    done = run("webhook", "--port", str(free_port()), TGMS_DATA_DIR=str(data_dir))
    assert done.returncode == 2
    assert one_line(done).startswith("tgms: configuration error: TGMS_WEBHOOK_SECRET: is not set")
    assert not (data_dir / "pgdata").exists()  # the embedded PostgreSQL was never started


def test_port_in_use_is_one_line_naming_the_port_and_the_fix(data_dir: Path, taken_port: int) -> None:
    webhook = run("webhook", "--port", str(taken_port), TGMS_DATA_DIR=str(data_dir), TGMS_WEBHOOK_SECRET=SECRET)
    assert webhook.returncode == 1
    line = one_line(webhook)
    assert line.startswith(f"tgms webhook: cannot listen on 127.0.0.1:{taken_port}:") and "--port" in line
    assert not (data_dir / "pgdata").exists()

    sim = run("sim", "--port", str(taken_port))
    assert sim.returncode == 1
    line = one_line(sim)
    assert line.startswith(f"tgms sim: cannot listen on 127.0.0.1:{taken_port}:") and "--port" in line


def test_unreachable_database_is_one_line_without_the_password() -> None:
    dead = f"postgresql://tgms:{PASSWORD}@127.0.0.1:{free_port()}/tgms"
    for args in (("migrate",), ("groups", "list"), ("webhook", "--port", str(free_port()))):
        done = run(*args, DATABASE_URL=dead, TGMS_WEBHOOK_SECRET=SECRET)
        assert done.returncode == 1, (args, done.stderr)
        line = one_line(done)
        assert "cannot use the database" in line and "DATABASE_URL" in line, line
        assert PASSWORD not in done.stderr + done.stdout

    bad_host = run("migrate", DATABASE_URL=f"postgresql://tgms:{PASSWORD}@no-such-host.invalid/tgms")
    assert bad_host.returncode == 1
    assert "cannot use the database" in one_line(bad_host) and PASSWORD not in bad_host.stderr


def test_db_stop_prints_no_warning(data_dir: Path) -> None:
    started = run("db", "url", TGMS_DATA_DIR=str(data_dir))
    assert started.returncode == 0 and started.stderr == "", started.stderr
    stopped = run("db", "stop", TGMS_DATA_DIR=str(data_dir))
    assert (stopped.returncode, stopped.stdout.strip(), stopped.stderr) == (0, "embedded PostgreSQL stopped", "")
