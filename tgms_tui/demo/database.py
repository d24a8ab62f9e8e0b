"""The demo's own PostgreSQL: an embedded server in `<data dir>/demo`, one fresh database per run.

The server lives in its own data directory, never the user's, so the demo cannot touch real data.
Each run gets a database named after its pid (two demos at once share the server, not the data), which
is dropped when the run ends; the server is stopped when no other demo still uses it. Keeping the
cluster between runs saves initdb (seconds) on the next start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tgms_tui.backend.db import migrate
from tgms_tui.backend.embedded import embedded_url, stop_embedded

from .processes import pid_alive

log = logging.getLogger(__name__)

DB_PREFIX = "tgms_demo_"


def with_database(url: str, dbname: str) -> str:
    """`url` pointing at another database of the same server (query, e.g. the socket host, kept)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


class DemoDatabase:
    def __init__(self, demo_dir: Path) -> None:
        self.demo_dir = demo_dir
        self.pgdata = (demo_dir / "pgdata").resolve()
        self.dbname = f"{DB_PREFIX}{os.getpid()}"
        self.server_url: str | None = None
        self.url: str | None = None

    @property
    def postmaster_pid(self) -> int | None:
        try:
            return int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def start(self) -> str:
        """Start (or join) the server, create this run's database, migrate it; return its URL."""
        self._forget_dead_users()
        self.server_url = embedded_url(self.demo_dir, cleanup="stop")
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (DB_PREFIX,)
            ).fetchall():
                suffix = name[len(DB_PREFIX) :]
                if name != self.dbname and (not suffix.isdigit() or not pid_alive(int(suffix))):
                    conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # a crashed run's
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.url = with_database(self.server_url, self.dbname)
        migrate(self.url)
        return self.url

    def stop(self) -> str:
        """Drop this run's database; stop the server unless another live demo uses it. Returns what
        became of the server: 'stopped', 'left running for another demo' or 'was not running'."""
        if self.server_url is not None:
            with contextlib.suppress(psycopg.Error), psycopg.connect(self.server_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')
        try:
            if self._other_users():
                return "left running for another demo"
            return "stopped" if stop_embedded(self.demo_dir) else "was not running"
        finally:
            # Decided here: pgserver's own exit hook, finding this pid gone from its list, does nothing
            # (it would otherwise wait on the stopped server's process, seconds where PID 1 reaps slowly).
            self._write_handles([pid for pid in self._read_handles() if pid != os.getpid()])

    # pgserver counts the processes using a server in this file and stops it when the last one exits;
    # a demo that was killed stays listed forever and the server would never stop again.
    @property
    def _handles(self) -> Path:
        return self.pgdata / ".handle_pids.json"

    def _read_handles(self) -> list[int]:
        try:
            values = json.loads(self._handles.read_text())
        except (OSError, ValueError):
            return []
        return [int(v) for v in values if isinstance(v, int)]

    def _write_handles(self, pids: list[int]) -> None:
        if pids != self._read_handles():
            with contextlib.suppress(OSError):
                self._handles.write_text(json.dumps(pids))

    def _forget_dead_users(self) -> None:
        self._write_handles([pid for pid in self._read_handles() if pid_alive(pid)])

    def _other_users(self) -> list[int]:
        return [pid for pid in self._read_handles() if pid != os.getpid() and pid_alive(pid)]
