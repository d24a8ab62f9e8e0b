"""The embedded default (no DATABASE_URL) and migrations racing from several processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from tests.support import with_database
from tgms_tui.backend.db import migration_files

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TGMS_", "DATABASE_URL"))}
    env.update(extra)
    return env


def test_processes_share_one_embedded_server_and_db_stop_stops_it() -> None:
    data = tempfile.mkdtemp(prefix="tgms-emb-", dir="/tmp")
    env = _env(TGMS_DATA_DIR=data)
    try:
        url = subprocess.run(
            [sys.executable, "-m", "tgms_tui.commands.cli", "db", "url"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout.strip()
        assert url.startswith("postgresql://") and data in url
        # Several processes migrating at once: each file applied exactly once (advisory lock).
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tgms_tui.commands.cli", "migrate"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=120)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs)
        assert sum("applied:" in o for o in outputs) == 1
        with psycopg.connect(url) as conn:
            versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [p.stem for p in migration_files()]
    finally:
        stop = subprocess.run(
            [sys.executable, "-m", "tgms_tui.commands.cli", "db", "stop"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stop.returncode == 0
    assert not (Path(data) / "pgdata" / "postmaster.pid").exists()


def test_concurrent_migrations_on_a_server(pg_server_url: str) -> None:
    name = "tgms_migrate_race"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(pg_server_url, name)
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "tgms_tui.commands.cli", "migrate"],
                cwd=ROOT,
                env=_env(DATABASE_URL=url),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        results = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), results
        with psycopg.connect(url) as conn:
            count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
        assert count == (len(migration_files()),)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
