"""Shared fixtures: a real PostgreSQL for every test (DESIGN.md §9).

`TGMS_TEST_DATABASE_URL` names a server to use; otherwise a throwaway embedded cluster (pgserver) is
started for the session, so the suite passes on a machine with no PostgreSQL installed. The schema is
migrated once into a template database; each test gets its own copy (CREATE DATABASE ... TEMPLATE is
a file copy, far faster than migrating again).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tgms_tui.backend.db import migrate, open_pool

# Fails any test whose captured output or log records contain a bot token or secret.
pytest_plugins = ["tests.token_guard"]


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server (any database on it) the tests may create databases on."""
    given = os.environ.get("TGMS_TEST_DATABASE_URL")
    if given:
        yield given
        return
    data = Path(tempfile.mkdtemp(prefix="tgms-test-pg-"))
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data / "run"))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(mode=0o700, parents=True, exist_ok=True)
    import pgserver

    server = pgserver.get_server(data / "pgdata", cleanup_mode="delete")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server_url: str) -> Iterator[str]:
    """A migrated template database, made once per session."""
    name = f"tgms_tpl_{os.getpid()}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    migrate(with_database(pg_server_url, name))
    yield name
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def db_url(pg_server_url: str, template_db: str) -> Iterator[str]:
    """URL of a fresh, migrated database for this test only; dropped afterwards."""
    name = f"tgms_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield with_database(pg_server_url, name)
    finally:
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[AsyncConnectionPool]:
    """An open async pool on the test's database."""
    p = await open_pool(db_url, min_size=1, max_size=8)
    await p.wait()
    try:
        yield p
    finally:
        await p.close()
