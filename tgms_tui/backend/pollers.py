"""The long-polling intake's database side: one active poller per bot, and the pollers' health rows.

Telegram allows one getUpdates caller per bot: a second one ends the first with 409 "terminated by
other getUpdates request", and two pollers would take turns doing that for ever. So a poller polls
only while it holds a session-level advisory lock for its bot, taken with `pg_try_advisory_lock` on a
dedicated connection that it keeps for as long as it polls; every other `tgms poll` for that bot
stands by and retries the lock every second. The lock needs no table and no expiry: PostgreSQL
releases it when the session ends, so a killed poller (its socket closes at once) is replaced within
about a second.

A network partition is the slow case: the server ends a session whose client vanished without
closing the socket only when TCP keepalive gives up. `LEASE_CONNECTION` turns keepalive on with
short timers (about 15 s: idle 5 s, then 5 probes 2 s apart), and `tcp_user_timeout` bounds unacked
writes the same way, so the lock of a poller cut off from the database is free after ~15 s. The cut-off
poller itself learns it lost its session at its next heartbeat on that connection (every 2 s) and stops
polling; until then both may call getUpdates, which costs a few 409s and never an update: each batch
is stored before it is confirmed, and a batch stored twice is a duplicate the store ignores.

Health: each poller process writes one `bot_health` row per bot it polls, `bot_name = 'poller'`,
`worker_id = 'poller:<bot>:<host>:<pid>'`, status `polling` (holds the lock), `standby`, `waiting`
(backing off: database or Bot API unavailable) or `stopped`; `jobs_done` counts the updates it
stored, `jobs_failed` the batches it could not store or fetch at the first try.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from psycopg import AsyncConnection

from . import health

POLLER_BOT_NAME = "poller"
# The first key of the two-key advisory lock: ours ("TGpl"), so the lock cannot collide with an
# application's one-key locks (a different key space) or with other two-key users picking small numbers.
LOCK_CLASS = 0x5447_706C
# libpq options for the connection holding the lock (see the module docstring).
LEASE_CONNECTION: dict[str, Any] = {
    "autocommit": True,
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 5,
    "tcp_user_timeout": 15_000,
    "application_name": "tgms-poll",
}

SQL_TRY_LOCK = "SELECT pg_try_advisory_lock(%(cls)s, hashtext(%(key)s))"
SQL_UNLOCK = "SELECT pg_advisory_unlock(%(cls)s, hashtext(%(key)s))"
SQL_POLLERS = f"""
SELECT split_part(worker_id, ':', 2) AS bot, status, host, pid,
       EXTRACT(EPOCH FROM now() - updated_at) AS age, ({health.alive("h", "%(stale)s")}) AS alive
  FROM bot_health AS h
 WHERE bot_name = '{POLLER_BOT_NAME}' AND (status <> 'stopped' OR updated_at > now() - interval '1 hour')
 ORDER BY bot, status, host, pid
"""


def lock_key(bot_id: int | None, bot: str) -> str:
    """What the lock is about: the Telegram bot (its id), so two TGMS deployments sharing a database
    but not a bot never wait for each other."""
    return f"tgms-poll:{bot_id if bot_id is not None else bot}"


def worker_id(bot: str, host: str, pid: int) -> str:
    return f"{POLLER_BOT_NAME}:{bot}:{host}:{pid}"


async def try_lock(conn: AsyncConnection[Any], key: str) -> bool:
    """Take the bot's polling lock for this session if it is free; whether this session holds it."""
    cur = await conn.execute(SQL_TRY_LOCK, {"cls": LOCK_CLASS, "key": key})
    row = await cur.fetchone()
    return bool(row and row[0])


async def unlock(conn: AsyncConnection[Any], key: str) -> None:
    await conn.execute(SQL_UNLOCK, {"cls": LOCK_CLASS, "key": key})


class PollerRow(NamedTuple):
    bot: str
    status: str
    host: str | None
    pid: int | None
    age_seconds: float
    alive: bool


async def pollers(conn: AsyncConnection[Any], stale_seconds: float = 15.0) -> list[PollerRow]:
    """The poller processes seen in the last hour (stopped ones included), by bot."""
    cur = await conn.execute(SQL_POLLERS, {"stale": stale_seconds})
    return [PollerRow(bot, status, host, pid, float(age), bool(alive)) for bot, status, host, pid, age, alive in
            await cur.fetchall()]  # fmt: skip
