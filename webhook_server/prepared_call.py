"""Run one server-side prepared statement on a psycopg connection's libpq handle, without the cursor.

The intake runs the same statement with one text parameter for every batch. Through
`AsyncConnection.execute` each run paid for a cursor, query conversion, the prepared-statement cache
and a generic wait (a timer and a poll per wait), measured at about a tenth of the webhook server's
CPU per update under load. Here it is what libpq needs: send, flush, wait for the socket, read.

The connection stays a normal psycopg connection (pool, configuration, error classes); this only
assumes it is idle, in autocommit mode and nonblocking (psycopg's async connections are).
"""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg import pq
from psycopg.errors import error_from_result


async def _socket_ready(loop: asyncio.AbstractEventLoop, fd: int, *, writing: bool) -> None:
    """Wait until the connection's socket can be written (or read)."""
    future: asyncio.Future[None] = loop.create_future()
    add, remove = (loop.add_writer, loop.remove_writer) if writing else (loop.add_reader, loop.remove_reader)

    def ready() -> None:
        remove(fd)  # level-triggered: stop the callbacks until we wait again
        if not future.done():
            future.set_result(None)

    add(fd, ready)
    try:
        await future
    finally:
        remove(fd)


async def run_prepared(conn: psycopg.AsyncConnection[Any], name: bytes, params: list[bytes | None]) -> pq.abc.PGresult:
    """Execute the prepared statement `name` with text `params`; its (single) result, text format.
    Raises the psycopg error class PostgreSQL's SQLSTATE maps to, or OperationalError for a
    connection that broke (the caller discards it)."""
    pgconn = conn.pgconn
    loop = asyncio.get_running_loop()
    fd = pgconn.socket
    try:
        pgconn.send_query_prepared(name, params)
        while pgconn.flush():  # 1: part of the message is still waiting for the socket
            await _socket_ready(loop, fd, writing=True)
        result: pq.abc.PGresult | None = None
        error: psycopg.Error | None = None
        while True:
            if pgconn.is_busy():
                await _socket_ready(loop, fd, writing=False)
                pgconn.consume_input()
                continue
            res = pgconn.get_result()
            if res is None:
                break
            if res.status == pq.ExecStatus.FATAL_ERROR and error is None:
                error = error_from_result(res, conn.info.encoding)
            elif result is None:
                result = res
    except OSError as exc:  # the socket went away under the event loop
        raise psycopg.OperationalError(f"connection socket failed: {exc}") from exc
    if error is not None:
        raise error
    if result is None or result.status != pq.ExecStatus.TUPLES_OK:
        raise psycopg.InterfaceError("the prepared statement returned no rows")
    return result
