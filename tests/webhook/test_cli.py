"""`python -m webhook_server` / `tgms webhook`: refuses to run without a secret, serves with one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .conftest import SECRET, free_port

REPO = Path(__file__).resolve().parents[2]


def env_for(db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TGMS_WEBHOOK_SECRET", "ADMIN_API_KEY")}
    env.update({"DATABASE_URL": db_url, "TGMS_LOG_LEVEL": "WARNING", **extra})
    return env


def test_refuses_to_start_without_a_secret(db_url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tgms_tui.commands.cli", "webhook", "--port", str(free_port())],
        cwd=tmp_path, env=env_for(db_url, PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "TGMS_WEBHOOK_SECRET" in done.stderr
    assert "Traceback" not in done.stderr


def test_serves_and_stops_cleanly(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "webhook_server", "--port", str(port)],
        cwd=tmp_path, env=env_for(db_url, TGMS_WEBHOOK_SECRET=SECRET, PYTHONPATH=str(REPO)),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        assert ready.status_code == 200
        update = httpx.post(
            f"http://127.0.0.1:{port}/api/webhook",
            json={"update_id": 1, "message": {"message_id": 1, "date": 0, "chat": {"id": 1, "type": "private"}}},
            headers={"X-Telegram-Bot-Api-Secret-Token": SECRET},
        )
        assert update.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert SECRET not in output
