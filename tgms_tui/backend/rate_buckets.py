"""The `rate_buckets` repository: token buckets shared by every worker process (workers/rate_limit.py
says which buckets a send needs and how long to wait). Levels refill lazily from the database clock,
so processes on any number of hosts share one budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import AsyncConnection

# Create missing buckets full; adopt a changed configuration without touching the level otherwise.
# Keys arrive sorted so concurrent upserts lock rows in the same order.
ENSURE_BUCKETS = """
INSERT INTO rate_buckets AS b (key, tokens, capacity, refill_per_sec, updated_at)
SELECT k, c, c, r, clock_timestamp()
  FROM unnest(%(keys)s::text[], %(capacities)s::float8[], %(rates)s::float8[]) AS w(k, c, r)
 ORDER BY k
ON CONFLICT (key) DO UPDATE
   SET capacity = EXCLUDED.capacity,
       refill_per_sec = EXCLUDED.refill_per_sec,
       tokens = LEAST(b.tokens, EXCLUDED.capacity)
 WHERE b.capacity <> EXCLUDED.capacity OR b.refill_per_sec <> EXCLUDED.refill_per_sec
"""

# The buckets of `keys`, locked (newest versions, in key order, so no deadlocks) with each one's level
# refilled up to now: the start of every take.
_LOCK_LEVELS = """
WITH cur AS (
    SELECT key,
           LEAST(capacity, tokens + refill_per_sec
                 * GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - updated_at))) AS level,
           refill_per_sec,
           paused_until
      FROM rate_buckets
     WHERE key = ANY(%(keys)s::text[])
     ORDER BY key
       FOR UPDATE
)"""

# The all-or-nothing take. `cur` locks the rows (newest versions, in key order) and computes each
# refilled level; `verdict` grants only if every wanted row exists, has >= 1 token and is not paused;
# `take` is the conditional UPDATE. The SELECT reports the verdict and, when refused, how long until
# the slowest bucket can pay.
TAKE_TOKENS = f"""
{_LOCK_LEVELS}, verdict AS (
    SELECT count(*) AS found,
           coalesce(bool_and(level >= 1 AND (paused_until IS NULL OR paused_until <= clock_timestamp())),
                    false) AS granted,
           coalesce(max(GREATEST(
               CASE WHEN level >= 1 THEN 0 ELSE (1 - level) / refill_per_sec END,
               coalesce(EXTRACT(EPOCH FROM paused_until - clock_timestamp()), 0))), 0) AS wait
      FROM cur
), take AS (
    UPDATE rate_buckets AS b
       SET tokens = cur.level - 1,
           updated_at = clock_timestamp()
      FROM cur, verdict
     WHERE b.key = cur.key
       AND verdict.granted
       AND verdict.found = %(n)s
    RETURNING b.key
)
SELECT verdict.found, verdict.granted AND verdict.found = %(n)s, verdict.wait, (SELECT count(*) FROM take)
  FROM verdict
"""

# Up to `want` tokens from every bucket of `keys` at once (a batch of calls that need only these
# buckets): as many as the poorest bucket holds whole, none while any is paused or missing. When it
# grants none, `wait` is how long until `target` tokens could be taken (a caller that wants a batch
# sleeps for a batch, not for each token, so fewer statements compete for the rows).
TAKE_UP_TO = f"""
{_LOCK_LEVELS}, verdict AS (
    SELECT count(*) AS found,
           CASE WHEN count(*) = %(n)s
                     AND bool_and(paused_until IS NULL OR paused_until <= clock_timestamp())
                THEN LEAST(%(want)s, GREATEST(0, floor(min(level))))::int ELSE 0 END AS granted,
           coalesce(max(GREATEST(
               GREATEST(0, %(target)s - level) / refill_per_sec,
               coalesce(EXTRACT(EPOCH FROM paused_until - clock_timestamp()), 0))), 0) AS wait
      FROM cur
), take AS (
    UPDATE rate_buckets AS b
       SET tokens = cur.level - verdict.granted,
           updated_at = clock_timestamp()
      FROM cur, verdict
     WHERE b.key = cur.key AND verdict.granted > 0
    RETURNING b.key
)
SELECT verdict.found, verdict.granted, verdict.wait, (SELECT count(*) FROM take) FROM verdict
"""

# One token from each item's own buckets (a batch of sends to distinct chats: each chat's per-chat and
# per-group buckets), all-or-nothing per item, in one statement: an item is granted when every one of
# its buckets exists, has a token and is not paused. `wait` is how long until a refused item could
# pay (0 for a granted one, or one whose bucket is missing). No key may belong to two items.
TAKE_EACH = f"""
{_LOCK_LEVELS}, want AS (
    SELECT item, key FROM unnest(%(items)s::int[], %(keys)s::text[]) AS w(item, key)
), verdict AS (
    SELECT w.item,
           count(c.key) = count(*)
           AND coalesce(bool_and(c.level >= 1 AND (c.paused_until IS NULL OR c.paused_until <= clock_timestamp())),
                        false) AS granted,
           coalesce(max(GREATEST(
               CASE WHEN c.level >= 1 THEN 0 ELSE (1 - c.level) / c.refill_per_sec END,
               coalesce(EXTRACT(EPOCH FROM c.paused_until - clock_timestamp()), 0))), 0) AS wait
      FROM want w LEFT JOIN cur c ON c.key = w.key
     GROUP BY w.item
), take AS (
    UPDATE rate_buckets AS b
       SET tokens = cur.level - 1,
           updated_at = clock_timestamp()
      FROM cur JOIN want w ON w.key = cur.key JOIN verdict v ON v.item = w.item AND v.granted
     WHERE b.key = cur.key
    RETURNING b.key
)
SELECT v.item, v.granted, v.wait FROM verdict v WHERE (SELECT count(*) FROM take) >= 0
"""

# Tokens taken for calls that were not made after all go back (never above the capacity).
GIVE_BACK = """
UPDATE rate_buckets
   SET tokens = LEAST(capacity, tokens + %(n)s + refill_per_sec
                      * GREATEST(0, EXTRACT(EPOCH FROM clock_timestamp() - updated_at))),
       updated_at = clock_timestamp()
 WHERE key = ANY(%(keys)s::text[])
"""

# A 429: pause a bucket (created if missing); an earlier, longer pause is kept.
PAUSE_BUCKET = """
INSERT INTO rate_buckets AS b (key, tokens, capacity, refill_per_sec, updated_at, paused_until)
VALUES (%(key)s, 0, %(capacity)s, %(rate)s, clock_timestamp(),
        clock_timestamp() + make_interval(secs => %(seconds)s))
ON CONFLICT (key) DO UPDATE
   SET paused_until = GREATEST(coalesce(b.paused_until, '-infinity'), EXCLUDED.paused_until)
"""

PAUSED_FOR = """
SELECT coalesce(max(GREATEST(0, EXTRACT(EPOCH FROM paused_until - clock_timestamp()))), 0)
  FROM rate_buckets WHERE key = ANY(%(keys)s::text[])
"""


async def ensure(conn: AsyncConnection[Any], buckets: Sequence[tuple[str, float, float]]) -> None:
    """Create the (key, capacity, refill per second) buckets that are missing; `buckets` sorted by key."""
    params = {
        "keys": [k for k, _, _ in buckets],
        "capacities": [c for _, c, _ in buckets],
        "rates": [r for *_, r in buckets],
    }
    await conn.execute(ENSURE_BUCKETS, params)


async def take(conn: AsyncConnection[Any], keys: Sequence[str]) -> tuple[bool, float, int]:
    """One token from every bucket of `keys`, or none: (granted, seconds until it could be, buckets found)."""
    cur = await conn.execute(TAKE_TOKENS, {"keys": list(keys), "n": len(keys)})
    row = await cur.fetchone()
    assert row is not None  # the aggregate always yields one row
    found, granted, wait, _taken = row
    return bool(granted), float(wait), int(found)


async def take_up_to(
    conn: AsyncConnection[Any], keys: Sequence[str], want: int, target: float
) -> tuple[int, float, int]:
    """Up to `want` tokens from every bucket of `keys`: (granted, seconds until `target` tokens could
    be taken, buckets found)."""
    params = {"keys": list(keys), "n": len(keys), "want": int(want), "target": float(target)}
    cur = await conn.execute(TAKE_UP_TO, params)
    row = await cur.fetchone()
    assert row is not None  # the aggregate always yields one row
    found, granted, wait, _taken = row
    return int(granted), float(wait), int(found)


async def take_each(conn: AsyncConnection[Any], keys: Sequence[Sequence[str]]) -> list[tuple[bool, float]]:
    """One token from every bucket of each `keys[i]` (all or nothing per item; no key shared between
    items): (granted, seconds until it could be) per item, in order."""
    items = [i for i, ks in enumerate(keys) for _ in ks]
    flat = [k for ks in keys for k in ks]
    cur = await conn.execute(TAKE_EACH, {"items": items, "keys": flat})
    verdicts = {int(item): (bool(granted), float(wait)) for item, granted, wait in await cur.fetchall()}
    return [verdicts.get(i, (False, 0.0)) for i in range(len(keys))]


async def give_back(conn: AsyncConnection[Any], keys: Sequence[str], n: int) -> None:
    await conn.execute(GIVE_BACK, {"keys": list(keys), "n": float(n)})


async def pause(conn: AsyncConnection[Any], key: str, capacity: float, rate: float, seconds: float) -> None:
    params = {"key": key, "capacity": float(capacity), "rate": float(rate), "seconds": float(seconds)}
    await conn.execute(PAUSE_BUCKET, params)


async def paused_for(conn: AsyncConnection[Any], keys: Sequence[str]) -> float:
    """Seconds left on the longest pause of `keys` (0 when none)."""
    cur = await conn.execute(PAUSED_FOR, {"keys": list(keys)})
    row = await cur.fetchone()
    return float(row[0]) if row else 0.0
