"""DATABASE_URL gets TCP keepalives and timeouts (TGMS_DB_TCP_TIMEOUT_SECONDS) unless it sets its own."""

from __future__ import annotations

from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from tgms_tui.backend.config import load_settings
from tgms_tui.backend.db import database_url, tcp_options


def test_a_tcp_url_gets_every_option_sized_by_the_timeout() -> None:
    url = tcp_options("postgresql://tgms:pw@db.internal:5432/tgms?sslmode=require", 20)
    params = conninfo_to_dict(url)
    assert params["host"] == "db.internal" and params["sslmode"] == "require" and params["password"] == "pw"
    assert {k: params[k] for k in ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                                   "tcp_user_timeout", "connect_timeout")} == {
        "keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "3", "keepalives_count": "3",
        "tcp_user_timeout": "20000", "connect_timeout": "10"}  # fmt: skip


def test_the_url_wins_and_key_value_strings_work_too() -> None:
    params = conninfo_to_dict(tcp_options("postgresql://h/db?keepalives_idle=60&tcp_user_timeout=0", 20))
    assert (params["keepalives_idle"], params["tcp_user_timeout"], params["keepalives_interval"]) == ("60", "0", "3")
    params = conninfo_to_dict(tcp_options("host=10.0.0.5 dbname=tgms", 6))
    assert (params["host"], params["keepalives_idle"], params["tcp_user_timeout"]) == ("10.0.0.5", "3", "6000")


def test_unix_sockets_and_a_zero_timeout_are_left_alone() -> None:
    for url in ("postgresql:///tgms?host=/run/postgresql", "host=/tmp dbname=x", "postgresql://%2Ftmp/db"):
        assert tcp_options(url, 20) == url
    assert tcp_options("postgresql://h/db", 0) == "postgresql://h/db"


def test_settings_carry_it_to_database_url(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "postgresql://h:5432/db", "TGMS_DB_TCP_TIMEOUT_SECONDS": "9"}
    url = database_url(load_settings(env, dotenv=None))
    assert conninfo_to_dict(url)["tcp_user_timeout"] == "9000"
    off = database_url(load_settings({**env, "TGMS_DB_TCP_TIMEOUT_SECONDS": "0"}, dotenv=None))
    assert off == "postgresql://h:5432/db"
