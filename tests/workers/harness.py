"""The whole pipeline as real processes, for end-to-end worker tests and the benchmarks.

simulator (SimServer, in this process, its own thread) → webhook (`python -m webhook_server`, a
subprocess under uvicorn) → jobs table → workers (`python -m workers.main` / `workers.tgms_worker`
subprocesses) → simulator, which records every Bot API call.

Every process gets the same environment: the test database, the simulator as TELEGRAM_API_BASE and two
bot tokens the simulator knows. Process output goes to files under the test's tmp dir (shown when a
wait times out), never to the test's own streams.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg

from telegram_sim.config import SimConfig
from telegram_sim.control import SimControl
from telegram_sim.server import SimServer
from tests.support import free_port, http_ok, poll_until, stop_processes
from tests.support import percentile as percentile  # tests/reliability reads it from here

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
WEBHOOK_SECRET = "e2e-webhook-secret_" + secrets.token_hex(8)
ADMIN_KEY = "e2e-admin-key-" + secrets.token_hex(12)
# Every update type TGMS uses; chat_member must be asked for explicitly (Telegram's default omits it).
ALLOWED_UPDATES = ["message", "edited_message", "callback_query", "my_chat_member", "chat_member", "chat_join_request"]


def make_token(bot_id: int) -> str:
    return f"{bot_id}:AA{secrets.token_urlsafe(26)}"


class Stack:
    """One simulator + webhook, and any number of workers, on one database."""

    def __init__(
        self,
        db_url: str,
        workdir: Path,
        *,
        sim_config: SimConfig | None = None,
        env: dict[str, str] | None = None,
        webhook: bool = True,
        tree: Path = REPO,
    ) -> None:
        self.db_url = db_url
        self.tree = tree  # the source tree the processes run from (a benchmark's baseline: another one)
        self.workdir = workdir
        self.main_bot_id = 5_100_000_000 + secrets.randbelow(10**6)
        self.tgms_bot_id = 6_100_000_000 + secrets.randbelow(10**6)
        self.main_token = make_token(self.main_bot_id)
        self.tgms_token = make_token(self.tgms_bot_id)
        self.sim = SimServer(
            config=sim_config or SimConfig(enforce_flood_limits=False), bots=[self.main_token, self.tgms_token]
        )
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.extra_env = dict(env or {})
        self.webhook_url: str | None = None
        self._want_webhook = webhook
        self._counter = 0

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Stack:
        self.sim.start()
        if self._want_webhook:
            self.start_webhook()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        stop_processes((proc for _name, proc, _log in self.procs), signal.SIGTERM, grace=15)
        self.sim.stop()

    @property
    def ctl(self) -> SimControl:
        return self.sim.control

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "BOT_TOKEN", "DATABASE_URL"))}
        env.update(
            {
                "DATABASE_URL": self.db_url,
                "BOT_TOKEN": self.main_token,
                "TGMS_BOT_TOKEN": self.tgms_token,
                "TELEGRAM_API_BASE": self.sim.base_url,
                "TGMS_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "ADMIN_API_KEY": ADMIN_KEY,
                "TGMS_DATA_DIR": str(self.workdir / "data"),
                "TGMS_RATE_PER_SECOND": "200",
                "TGMS_GROUP_DELAY_SECONDS": "0",
                "TGMS_GROUP_MESSAGES_PER_MINUTE": "1000",
                "TGMS_LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        env.update(overrides)
        return env

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        self._counter += 1
        log_path = self.workdir / f"{self._counter:02d}-{name}.log"
        handle = log_path.open("wb")
        if self.tree != REPO:
            env = {**env, "PYTHONPATH": str(self.tree)}
        proc = subprocess.Popen(
            [sys.executable, *args], cwd=self.tree, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
        handle.close()
        self.procs.append((name, proc, log_path))
        return proc

    def start_webhook(self) -> str:
        port = free_port()
        self._spawn("webhook", ["-m", "webhook_server", "--port", str(port)], self.env())
        url = f"http://127.0.0.1:{port}"
        self.wait_for(lambda: http_ok(f"{url}/healthz"), timeout=30, what="webhook server up")
        self.webhook_url = url
        self.sim.state.set_webhook(
            self.main_bot_id, f"{url}/api/webhook", secret_token=WEBHOOK_SECRET, allowed_updates=ALLOWED_UPDATES
        )
        self.sim.state.set_webhook(
            self.tgms_bot_id, f"{url}/api/webhook/tgms", secret_token=WEBHOOK_SECRET, allowed_updates=ALLOWED_UPDATES
        )
        return url

    def start_worker(self, pool: str, *args: str, **env: str) -> subprocess.Popen[bytes]:
        """`tgms worker <pool> <args>` as a subprocess; returns once it heartbeats as running."""
        proc = self._spawn(f"worker-{pool}", ["-m", "tgms_tui.commands.cli", "worker", pool, *args], self.env(**env))
        self.wait_for(
            lambda: self.scalar("SELECT count(*) FROM bot_health WHERE pid = %s AND status = 'running'", (proc.pid,)),
            timeout=30,
            what=f"{pool} worker {proc.pid} running",
        )
        return proc

    def kill(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        proc.send_signal(sig)
        proc.wait(30)

    # ------------------------------------------------------------ database

    def sql(self, query: str, params: Iterable[Any] | dict[str, Any] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []

    def scalar(self, query: str, params: Iterable[Any] | dict[str, Any] = ()) -> Any:
        rows = self.sql(query, params)
        return rows[0][0] if rows else None

    def add_group(self, chat: dict[str, Any], **columns: Any) -> int:
        """Register a simulator chat as a managed group directly (the setup a test is not about)."""
        values = {
            "group_id": chat["id"],
            "title": chat.get("title") or "",
            "chat_type": chat["type"],
            "phase": "growth",
            "is_active": True,
            "bot_can_invite": True,
            **columns,
        }
        names = ", ".join(values)
        marks = ", ".join(f"%({k})s" for k in values)
        self.sql(f"INSERT INTO managed_groups ({names}) VALUES ({marks})", values)
        return int(chat["id"])

    def enqueue(self, job_type: str, payload: dict[str, Any], **kw: Any) -> int:
        from psycopg.types.json import Jsonb

        cols = {"job_type": job_type, "payload": Jsonb(payload), **kw}
        names = ", ".join(cols)
        marks = ", ".join(f"%({k})s" for k in cols)
        return int(self.scalar(f"INSERT INTO jobs ({names}) VALUES ({marks}) RETURNING job_id", cols))

    def broadcast(self, body: dict[str, Any]) -> int:
        """POST /api/tgms/send as an operator would; returns the broadcast id."""
        assert self.webhook_url is not None
        response = httpx.post(f"{self.webhook_url}/api/tgms/send", json=body, headers={"x-api-key": ADMIN_KEY},
                              timeout=10)  # fmt: skip
        assert response.status_code == 200, response.text
        data = response.json()
        return int(data["broadcast_id"])

    # ------------------------------------------------------------ simulator

    def calls(self, method: str | None = None, **kw: Any) -> list[dict[str, Any]]:
        return list(self.ctl.calls(method, **kw))

    def ok_sends(self, method: str = "sendMessage") -> dict[int, int]:
        """Successful `method` calls per chat id."""
        out: dict[int, int] = {}
        for call in self.calls(method, ok=True):
            out[int(call["chat_id"])] = out.get(int(call["chat_id"]), 0) + 1
        return out

    # ------------------------------------------------------------ waiting

    def wait_for(self, check: Callable[[], T], *, timeout: float = 30.0, what: str = "condition",
                 interval: float = 0.05) -> T:  # fmt: skip
        """`poll_until`, failing at once (with the processes' log tails) when one of them crashed."""

        def check_or_crash() -> T:
            value = check()
            for name, proc, _log in [] if value else self.procs:
                if proc.poll() is not None and proc.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM):
                    raise AssertionError(f"{name} exited with {proc.returncode}\n{self.log_tails()}")
            return value

        return poll_until(check_or_crash, timeout=timeout, what=what, interval=interval,
                          detail=lambda: self.queue_state() + self.handler_dumps() + self.log_tails())  # fmt: skip

    def handler_dumps(self, per_worker: int = 8) -> str:
        """Where each live worker's handlers wait: SIGUSR1 makes a worker log its task dump
        (workers/task_dump.py); the blocks of its handlers' tasks (`--- job ...`), a few per worker."""
        workers = [(n, p, path) for n, p, path in self.procs if n.startswith("worker") and p.poll() is None]
        for _name, proc, _path in workers:
            proc.send_signal(signal.SIGUSR1)
        if not workers:
            return ""
        time.sleep(1.0)
        parts = []
        for name, _proc, path in workers:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            at = text.rfind("task dump of")
            if at < 0:
                continue
            handlers = []
            for block in text[at:].split("\n--- ")[1:]:
                lines = block.splitlines()
                if lines and lines[0].startswith("job "):
                    frames = [line for line in lines[1:] if line.startswith("    ")]
                    handlers.append("\n".join([lines[0], *frames]))
            parts.append(f"--- {name}: {len(handlers)} handler(s) in flight ---\n" + "\n".join(handlers[:per_worker]))
        return "\n".join(parts) + "\n"

    def queue_state(self) -> str:
        """What a timed-out wait needs to be understood: jobs by type, status and retries (with a
        last error), and join requests by status."""
        try:
            jobs = self.sql("SELECT job_type, status, retries, count(*), max(left(last_error, 160)) FROM jobs "
                            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")  # fmt: skip
            requests = self.sql("SELECT status, count(*) FROM join_requests GROUP BY 1 ORDER BY 1")
        except Exception as exc:  # the database may be what is down
            return f"--- queue state unavailable: {type(exc).__name__}\n"
        lines = ["--- jobs (type, status, retries, count, last error) ---"]
        lines += [" ".join(str(v) for v in row) for row in jobs]
        lines.append(f"--- join_requests by status: {requests}")
        return "\n".join(lines) + "\n"

    def wait_jobs_idle(self, job_type: str | None = None, timeout: float = 30.0) -> None:
        """Until no job (of `job_type`) is pending and due, or running."""
        query = "SELECT count(*) FROM jobs WHERE (status = 'running' OR (status = 'pending' AND run_at <= now()))"
        params: tuple[Any, ...] = ()
        if job_type:
            query += " AND job_type = %s"
            params = (job_type,)
        self.wait_for(lambda: self.scalar(query, params) == 0, timeout=timeout, what=f"{job_type or 'all'} jobs idle")

    def log_tails(self, lines: int = 40) -> str:
        parts = []
        for name, _proc, path in self.procs:
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            parts.append(f"--- {name} ({path.name}) ---\n" + "\n".join(text))
        return "\n".join(parts)
