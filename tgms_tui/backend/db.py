"""Database access shared by every process: which server, the connection pool, and migrations.

`database_url()` is the one place that decides between DATABASE_URL and the embedded server.
Migrations are plain numbered SQL files applied in order under an advisory lock, so several processes
starting at once apply each file exactly once. A landed migration never changes: each applied file's
checksum is recorded, and a database whose recorded migration differs from the file refuses to migrate.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

from . import json_loads
from .config import Settings
from .embedded import CleanupMode, embedded_url

log = logging.getLogger(__name__)
json_loads.install()  # every process that talks to the database loads JSON the same, safe way

# Arbitrary constant shared by all TGMS processes: "the migration lock".
MIGRATION_LOCK_ID = 0x7467_6D73_0001  # "tgms" 0001

_REPO_SQL = Path(__file__).resolve().parents[2] / "sql"
_PACKAGED_SQL = Path(__file__).resolve().parent / "_sql"


def sql_dir() -> Path:
    """The migrations directory: the repo's sql/ in a checkout, or the copy packed into the wheel."""
    return _REPO_SQL if _REPO_SQL.is_dir() else _PACKAGED_SQL


def database_url(settings: Settings, *, cleanup: CleanupMode = "stop") -> str:
    """DATABASE_URL (with the TCP timeouts of `tcp_options`) when set, else the embedded server in
    TGMS_DATA_DIR (started or joined)."""
    if settings.database_url:
        return tcp_options(settings.database_url, settings.db_tcp_timeout)
    return embedded_url(settings.data_dir, cleanup=cleanup)


def tcp_options(url: str, timeout: float) -> str:
    """`url` plus libpq's TCP keepalives, `tcp_user_timeout` and `connect_timeout`, for a TCP server,
    each only where the URL does not set it: the URL always wins.

    Why: a PostgreSQL host that vanishes (network partition, a failover that moves the address, a
    crashed host) does not close the connections to it. A worker waiting on such a half-open connection
    would wait for the kernel's retransmission timeout (~15 min on Linux) while its leases lapse and
    other workers take its jobs. With these options, idle connections are probed after `timeout` / 2
    and given up within about `timeout` seconds, and so is a statement whose data goes unacknowledged
    for `timeout`: the caller gets an OperationalError and reconnects. 0 leaves the system defaults.
    """
    if timeout <= 0:
        return url
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return url  # not ours to judge here: connecting reports it
    host = str(params.get("host") or "")
    if not host or all(h.startswith("/") or h.startswith("@") for h in host.split(",")):
        return url  # a Unix socket: no TCP to time out
    wanted = {
        "keepalives": 1,
        "keepalives_idle": max(1, round(timeout / 2)),
        "keepalives_interval": max(1, round(timeout / 6)),
        "keepalives_count": 3,
        "tcp_user_timeout": int(timeout * 1000),
        "connect_timeout": max(2, round(timeout / 2)),
    }
    missing = {k: v for k, v in wanted.items() if k not in params}
    if not missing:
        return url
    if "://" in url:
        return f"{url}{'&' if '?' in url else '?'}{urlencode(missing)}"
    return " ".join([url, *(f"{k}={v}" for k, v in missing.items())])


def migration_files() -> list[Path]:
    return sorted(p for p in sql_dir().glob("[0-9][0-9][0-9]_*.sql"))


class MigrationChanged(RuntimeError):
    """A migration applied to this database differs from the file of the same name."""


def migration_checksum(path: Path) -> str:
    """SHA-256 of a migration file; line endings are normalised, so a CRLF checkout is the same file."""
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def migrate(url: str) -> list[str]:
    """Apply pending migrations; return the versions applied by this call (empty when up to date).

    Raises MigrationChanged when an applied migration's recorded checksum differs from its file."""
    applied_now: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version    text PRIMARY KEY,
                       applied_at timestamptz NOT NULL DEFAULT now(),
                       checksum   text)"""
            )
            _add_checksum_column(conn)
            done: dict[str, str | None] = dict(
                conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
            )
            for path in migration_files():
                version, checksum = path.stem, migration_checksum(path)
                if version in done:
                    _check_unchanged(conn, path, done[version], checksum)
                    continue
                with conn.transaction():
                    conn.execute(path.read_text(encoding="utf-8"))
                    conn.execute(
                        "INSERT INTO schema_migrations (version, checksum) VALUES (%s, %s)", (version, checksum)
                    )
                log.info("applied migration %s", version)
                applied_now.append(version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied_now


def _add_checksum_column(conn: psycopg.Connection[Any]) -> None:
    """Databases migrated before checksums were recorded lack the column. Altered only when missing:
    ALTER needs the table's owner, and a process may run as a role that merely uses the schema."""
    missing = conn.execute(
        """SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass
                                  AND attname = 'checksum' AND NOT attisdropped)"""
    ).fetchone()
    if missing and missing[0]:
        conn.execute("ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text")


def _check_unchanged(conn: psycopg.Connection[Any], path: Path, recorded: str | None, checksum: str) -> None:
    if recorded is None:  # applied before checksums were recorded: the file as it is now is the record
        conn.execute("UPDATE schema_migrations SET checksum = %s WHERE version = %s", (checksum, path.stem))
    elif recorded != checksum:
        raise MigrationChanged(
            f"{path.name} is not the migration this database applied (sha256 {recorded[:12]}..., the file has "
            f"{checksum[:12]}...): a landed migration never changes; restore the file and put the change in a "
            "new migration"
        )


def pending_migrations(url: str) -> list[str]:
    """Versions not applied yet (used by `tgms doctor`)."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
        done: set[str] = set()
        if exists and exists[0]:
            done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    return [p.stem for p in migration_files() if p.stem not in done]


async def open_pool(
    url: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    name: str = "tgms",
    autocommit: bool = False,
    wait_for_flush: bool = True,
) -> AsyncConnectionPool:
    """An opened async pool. Broken connections (e.g. after a PostgreSQL restart) are discarded
    by the pool on return, so callers retry on OperationalError and get a fresh connection.
    `autocommit` suits callers whose every statement stands alone: one round trip instead of
    statement + COMMIT. `wait_for_flush=False` (synchronous_commit off) is for writes whose loss in
    a PostgreSQL crash is harmless: a commit then returns without waiting for its WAL to reach disk
    (it does within ~200 ms, and at the next synchronous commit of anyone)."""

    async def configure(conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute("SET synchronous_commit = off")
        if not conn.autocommit:
            await conn.commit()

    pool = AsyncConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        open=False,
        name=name,
        timeout=10.0,
        kwargs={"autocommit": autocommit},
        configure=None if wait_for_flush else configure,
    )
    await pool.open(wait=False)
    return pool
