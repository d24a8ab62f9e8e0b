"""Shared fixtures: a real PostgreSQL for every test.

`TGMS_TEST_DATABASE_URL` names a server to use; otherwise a throwaway embedded cluster (pgserver) is
started for the session, so the suite passes on a machine with no PostgreSQL installed. The schema is
migrated once into a template database; each test gets its own copy (CREATE DATABASE ... TEMPLATE is
a file copy, far faster than migrating again).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.support import throwaway_postgres, with_database
from tgms_tui.backend.db import migrate, open_pool

# Fails any test whose captured output or log records contain a bot token or secret.
pytest_plugins = ["tests.token_guard"]


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server (any database on it) the tests may create databases on."""
    given = os.environ.get("TGMS_TEST_DATABASE_URL")
    if given:
        yield given
        return
    with throwaway_postgres("tgms-test-pg-") as server:
        yield str(server.get_uri())


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
