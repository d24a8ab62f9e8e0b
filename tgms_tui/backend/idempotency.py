"""The `idempotency_keys` repository: results of admin requests, by their client's Idempotency-Key.

A client that times out does not know whether its request did anything, so it retries; without a key
a retried broadcast goes to every group twice. With one, `claim` inserts (scope, key) in the caller's
transaction before the work is done and `record` stores the answer in the same transaction, so either
both the work and its key commit or neither does. A second request with the key finds the committed
row, or, while the first is still running, waits for it on the primary key, and gets its answer: two
requests with one key at the same moment do the work once. Rows are kept `KEPT_SECONDS` (at least a
day, as clients are told) and pruned by the maintenance job.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

KEPT_SECONDS = 48 * 3600  # promised: at least 24 h

SQL_CLAIM = """
INSERT INTO idempotency_keys (scope, key, request_hash) VALUES (%s, %s, %s)
ON CONFLICT (scope, key) DO NOTHING
RETURNING true
"""
SQL_STORED = """
SELECT request_hash, status_code, response FROM idempotency_keys WHERE scope = %s AND key = %s
"""
SQL_RECORD = """
UPDATE idempotency_keys SET status_code = %s, response = %s WHERE scope = %s AND key = %s
"""
SQL_PRUNE = "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => %s)"


@dataclass(frozen=True)
class StoredResult:
    """The answer an earlier request with the same key got."""

    request_hash: str
    status_code: int
    response: str  # the JSON body as it was sent


async def claim(conn: AsyncConnection[Any], scope: str, key: str, request_hash: str) -> StoredResult | None:
    """Take `key` for this request (None: do the work, then `record`) or return the stored result of
    the request that took it first. Must run inside the transaction that does the work; blocks while
    another transaction holds the same key uncommitted."""
    cur = await conn.execute(SQL_CLAIM, (scope, key, request_hash))
    if await cur.fetchone() is not None:
        return None
    cur = await conn.execute(SQL_STORED, (scope, key))
    row = await cur.fetchone()
    if row is None:  # pruned between the two statements: only possible for a key older than KEPT_SECONDS
        raise LookupError(f"idempotency key {key!r} vanished")
    request_hash_stored, status_code, response = row
    if status_code is None:  # a row committed without its answer: never written by `record`'s callers
        raise LookupError(f"idempotency key {key!r} has no stored result")
    return StoredResult(request_hash_stored, int(status_code), str(response))


async def record(conn: AsyncConnection[Any], scope: str, key: str, status_code: int, response: str) -> None:
    """Store the answer (its JSON body as sent) of the request that claimed `key`, in the claim's
    transaction."""
    await conn.execute(SQL_RECORD, (status_code, response, scope, key))


async def prune(conn: AsyncConnection[Any], older_than_seconds: float = KEPT_SECONDS) -> int:
    """Forget keys older than `older_than_seconds`; how many."""
    cur = await conn.execute(SQL_PRUNE, (older_than_seconds,))
    return cur.rowcount
