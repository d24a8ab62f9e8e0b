"""`python -m webhook_server` as a real process on a free loopback port, for tests of its command line
and of what only uvicorn's own configuration does (proxy headers, timeouts, concurrency limit)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import free_port

from .conftest import ADMIN_KEY, SECRET

REPO = Path(__file__).resolve().parents[2]
# Variables of the webhook's configuration that must come from the test only.
_OURS = ("TGMS_", "ADMIN_API_KEY", "FORWARDED_ALLOW_IPS", "DATABASE_URL", "BOT_TOKEN")


def webhook_env(db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env.update({"DATABASE_URL": db_url, "TGMS_LOG_LEVEL": "INFO", "PYTHONPATH": str(REPO)})
    env.update({"TGMS_WEBHOOK_SECRET": SECRET, "ADMIN_API_KEY": ADMIN_KEY, **extra})
    return env


@dataclass
class WebhookProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def run_webhook_command(db_url: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m webhook_server ARGS` to completion (for the start-up refusals)."""
    return subprocess.run(
        [sys.executable, "-m", "webhook_server", "--port", str(free_port()), *args],
        cwd=cwd, env=webhook_env(db_url, **env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@contextmanager
def webhook_process(db_url: str, workdir: Path, *args: str, **env: str) -> Iterator[WebhookProcess]:
    """A started `python -m webhook_server --port P ARGS`; SIGINT and a clean exit at the end."""
    port = free_port()
    log = workdir / f"webhook-{port}.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "webhook_server", "--port", str(port), *args],
            cwd=workdir, env=webhook_env(db_url, **env), stdout=handle, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = WebhookProcess(proc, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{server.url}/api/webhook", timeout=1, trust_env=False).status_code:
                    break  # any answer (405 for a GET): it is serving
            except httpx.TransportError:
                pass
            assert proc.poll() is None, server.output()
            assert time.monotonic() < deadline, "webhook server did not start\n" + server.output()
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
