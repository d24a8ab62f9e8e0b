"""What the benchmarks share: the PostgreSQL server they measure on and fresh databases on it.

`TGMS_BENCH_DATABASE_URL` names a server to use (each bench creates and drops its own databases on it);
otherwise a throwaway embedded PostgreSQL is started for the run and removed afterwards. Ports,
percentiles and process shutdown come from tests/support.py, which the tests use too.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import throwaway_postgres, with_database
from tgms_tui.backend.db import migrate


class Server(NamedTuple):
    url: str  # any database on the server; benches create their own
    pid: int | None  # the postmaster's pid when this run started the server (to measure its CPU)


@contextlib.contextmanager
def bench_server() -> Iterator[Server]:
    """TGMS_BENCH_DATABASE_URL's server when set, else a throwaway embedded one for the block."""
    given = os.environ.get("TGMS_BENCH_DATABASE_URL")
    if given:
        yield Server(given, None)
        return
    with throwaway_postgres("tgms-bench-") as server:
        yield Server(str(server.get_uri()), server.get_pid())


def fresh_database(server_url: str, name: str) -> str:
    """An empty database `name` on the server (an older one of that name is dropped); its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


@contextlib.contextmanager
def migrated_database(server_url: str, name: str) -> Iterator[str]:
    """A fresh database with TGMS's schema for the block, dropped afterwards."""
    url = fresh_database(server_url, name)
    try:
        migrate(url)
        yield url
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def bench_database(name: str) -> Iterator[str]:
    """A fresh, migrated database on the bench server (see the module docstring), dropped afterwards."""
    with bench_server() as server, migrated_database(server.url, name) as url:
        yield url
