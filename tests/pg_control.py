"""A dedicated throwaway PostgreSQL that a test may stop and start (outage scenarios).

The session server from conftest must never be stopped (other tests use it), so outage tests get
their own pgserver cluster, migrated, with stop()/start() around it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.support import start_postgres
from tgms_tui.backend.db import migrate


class DedicatedPostgres:
    def __init__(self) -> None:
        # Unix socket paths are limited to ~107 bytes: keep the data directory short.
        self.dir = Path(tempfile.mkdtemp(prefix="tgms-pg-", dir="/tmp"))
        self.pgdata = self.dir / "pgdata"
        self.server: Any = None
        self.url = ""

    def __enter__(self) -> DedicatedPostgres:
        self.server = start_postgres(self.dir)
        self.url = str(self.server.get_uri())
        migrate(self.url)
        return self

    def stop(self, mode: str = "fast") -> None:
        """ "fast": connected clients are cut off, as in a restart. "immediate": a crash — no
        checkpoint, and commits that did not wait for their WAL flush may be lost (recovery on start)."""
        from pgserver import _commands

        user = "pgserver" if os.geteuid() == 0 else None
        _commands.pg_ctl(["-m", mode, "-w", "stop"], pgdata=self.pgdata, user=user)  # type: ignore[attr-defined]

    def start(self) -> None:
        with self.server._lock:
            self.server.ensure_postgres_running()
        assert str(self.server.get_uri()) == self.url

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.start()  # pgserver's cleanup expects a running server
            self.server.cleanup()
        finally:
            import shutil

            shutil.rmtree(self.dir, ignore_errors=True)
