"""A small, fully known history for the analytics tests: two groups, one deactivated two days ago.

NOW is fixed, so every bucket's expected figure can be written down. Group A's readings: 100 long
before any window, 110 three days ago, 120 an hour ago. Group B: 50, deactivated two days ago.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

NOW = datetime(2026, 3, 10, 12, 30, tzinfo=UTC)
A, B = -100_001, -100_002
DEACTIVATED = NOW - timedelta(days=2)  # 2026-03-08 12:30


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment in March 2026 (UTC)."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def seed_history(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO managed_groups (group_id, title, is_active, member_count, deactivated_at, deactivated_reason)"
            " VALUES (%s, 'Alpha <b>[bold]</b>', true, 120, NULL, NULL), (%s, 'Beta', false, 50, %s, 'test')",
            (A, B, DEACTIVATED),
        )
        cur.executemany(
            "INSERT INTO member_count_history (group_id, member_count, recorded_at) VALUES (%s, %s, %s)",
            [
                (A, 100, NOW - timedelta(days=40)),
                (A, 110, at(7, 12)),
                (A, 120, at(10, 11, 15)),
                (B, 50, NOW - timedelta(days=40)),
            ],
        )
        joins = [
            (A, 1, "approved", at(9, 10)),
            (A, 2, "approved", at(9, 10, 5)),
            (A, 3, "approved", at(9, 10, 10)),
            (A, 4, "declined", at(9, 10, 20)),
            (A, 5, "expired", at(10, 12, 20)),  # in the live hour
            (B, 6, "approved", at(9, 8)),
            (A, 7, "approved", NOW - timedelta(days=45)),  # outside every window
        ]
        cur.executemany(
            "INSERT INTO join_requests (chat_id, user_id, status, requested_at, processed_at)"
            " VALUES (%s, %s, %s, %s - interval '1 minute', %s)",
            [(c, u, s, t, t) for c, u, s, t in joins],
        )
        cur.executemany(
            "INSERT INTO sent_messages (chat_id, debug_code, status, sent_at, updated_at) VALUES (%s, %s, %s, %s, %s)",
            [
                (A, "dbg-1", "sent", at(5, 9), at(5, 9)),
                (A, "dbg-2", "sent", at(5, 9, 30), at(5, 9, 30)),
                (B, "dbg-3", "failed", None, at(6, 14)),
                (B, "dbg-4", "skipped", None, at(6, 14)),  # neither delivered nor failed
            ],
        )
        cur.executemany(
            "INSERT INTO member_activity (chat_id, user_id, status, last_seen_at) VALUES (%s, %s, %s, %s)",
            [
                (A, 1, "member", NOW - timedelta(hours=1)),
                (A, 2, "member", NOW - timedelta(hours=5)),
                (A, 3, "administrator", NOW - timedelta(hours=20)),
                (A, 4, "member", NOW - timedelta(days=3)),  # not active
                (A, 5, "left", NOW - timedelta(hours=1)),  # gone
                (B, 6, "member", NOW - timedelta(hours=1)),
            ],
        )
        # yesterday's snapshot of A (taken by the rollup job then)
        cur.execute(
            "INSERT INTO analytics_group_daily (group_id, day, active_members) VALUES (%s, '2026-03-09', 7)", (A,)
        )
