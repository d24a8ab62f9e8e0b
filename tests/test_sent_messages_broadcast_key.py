"""sent_messages.broadcast_id keeps a foreign key's guarantees while it is checked once per statement
(a broadcast's start inserts 100,000 rows in one): missing broadcasts are refused, a row never moves
to another broadcast, deleting a broadcast deletes its rows, and a broadcast cannot be deleted under
an insert that names it, nor rows inserted for one being deleted."""

from __future__ import annotations

import threading

import psycopg
import pytest

INSERT = "INSERT INTO sent_messages (broadcast_id, chat_id, debug_code) VALUES (%s, %s, %s)"


def _broadcasts(conn: psycopg.Connection, *ids: int) -> None:
    for b in ids:
        conn.execute("INSERT INTO broadcasts (broadcast_id, text) VALUES (%s, 'x')", (b,))


def test_a_row_must_name_an_existing_broadcast_and_keeps_it(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        _broadcasts(conn, 1)
        with pytest.raises(psycopg.errors.ForeignKeyViolation) as refused:
            conn.execute(
                "INSERT INTO sent_messages (broadcast_id, chat_id, debug_code) "
                "VALUES (1, -100, 'B1G1'), (999, -100, 'B999G1'), (1, -101, 'B1G2')"
            )
        assert "Key (broadcast_id)=(999) is not present" in str(refused.value.diag.message_detail)
        assert refused.value.diag.constraint_name == "sent_messages_broadcast_id_fkey"
        row = conn.execute("SELECT count(*) FROM sent_messages").fetchone()
        assert row == (0,)  # the whole statement, not just the bad row

        conn.execute(INSERT, (1, -100, "B1G1"))
        conn.execute(INSERT, (None, -100, "T1"))  # a row of no broadcast stays allowed, as with the key
        _broadcasts(conn, 2)
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("UPDATE sent_messages SET broadcast_id = 2 WHERE broadcast_id = 1")
        conn.execute("UPDATE sent_messages SET status = 'sent', broadcast_id = 1 WHERE broadcast_id = 1")
        assert conn.execute("SELECT status FROM sent_messages WHERE broadcast_id = 1").fetchone() == ("sent",)


def test_deleting_a_broadcast_deletes_its_rows_only(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        _broadcasts(conn, 1, 2, 3)
        for b in (1, 2, 3):
            conn.execute(
                "INSERT INTO sent_messages (broadcast_id, chat_id, debug_code) "
                "SELECT %s, -g, 'B' || %s || 'G' || g FROM generate_series(1, 50) AS g",
                (b, b),
            )
        conn.execute("DELETE FROM broadcasts WHERE broadcast_id IN (1, 3)")
        rows = conn.execute("SELECT broadcast_id, count(*) FROM sent_messages GROUP BY 1").fetchall()
        assert rows == [(2, 50)]


def test_a_broadcast_cannot_vanish_under_a_concurrent_insert(db_url: str) -> None:
    """Insert first: the delete waits for the inserting transaction, then takes the new rows too.
    Delete first: the insert waits for the deleting transaction, then is refused."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        _broadcasts(conn, 1, 2)
    with psycopg.connect(db_url) as inserter, psycopg.connect(db_url) as deleter:
        inserter.execute(INSERT, (1, -100, "B1G1"))  # open transaction, broadcast 1 key-share locked
        deleter.execute("SET lock_timeout = '300ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            deleter.execute("DELETE FROM broadcasts WHERE broadcast_id = 1")
        deleter.rollback()
        inserter.commit()
        deleter.execute("DELETE FROM broadcasts WHERE broadcast_id = 1")
        deleter.commit()
        assert inserter.execute("SELECT count(*) FROM sent_messages").fetchone() == (0,)
        inserter.commit()

        deleter.execute("DELETE FROM broadcasts WHERE broadcast_id = 2")  # not committed yet
        outcome: list[BaseException | None] = []

        def insert() -> None:
            try:
                inserter.execute(INSERT, (2, -100, "B2G1"))
                outcome.append(None)
            except psycopg.Error as exc:
                outcome.append(exc)

        t = threading.Thread(target=insert)
        t.start()
        t.join(0.5)
        assert t.is_alive(), "the insert should wait for the deleting transaction"
        deleter.commit()
        t.join(10)
        assert len(outcome) == 1 and isinstance(outcome[0], psycopg.errors.ForeignKeyViolation), outcome
