"""A small, recognisable TGMS world in plain SQL for the TUI tests."""

from __future__ import annotations

import psycopg

GROUPS = {
    "alpha": -1001000000001,
    "beta": -1001000000002,
    "gamma": -1001000000003,
    "delta": -1001000000004,
    "epsilon": -1001000000005,
}

SEED_SQL = """
INSERT INTO managed_groups (group_id, title, phase, is_active, final_message_allowed, member_count,
                            consecutive_failures, deactivated_reason, last_broadcast_at)
VALUES (-1001000000001, 'Alpha growers', 'growth', true, false, 1100, 0, NULL, now() - interval '1 hour'),
       (-1001000000002, 'Beta [VIP] lounge', 'monitoring', true, true, 560, 2, NULL, NULL),
       (-1001000000003, 'Gamma archive', 'growth', false, true, 90, 3, 'bot was kicked', NULL),
       (-1001000000004, 'Delta news', 'growth', true, false, 4200, 0, NULL, NULL),
       (-1001000000005, 'Epsilon chat', 'monitoring', true, false, NULL, 0, NULL, NULL);
-- a second count so Alpha shows a trend (the 005 trigger keeps the previous value)
UPDATE managed_groups SET member_count = 1234 WHERE group_id = -1001000000001;

INSERT INTO member_count_history (group_id, member_count, recorded_at)
SELECT -1001000000001, 1000 + n * 25, now() - make_interval(hours => 10 - n) FROM generate_series(0, 9) AS n;

INSERT INTO jobs (job_type, payload, status, retries, max_retries, last_error, created_at, updated_at,
                  finished_at, locked_by, locked_until)
VALUES ('tgms_update_member_counts', '{"group_ids": [-1001000000001]}', 'pending', 0, 5, NULL,
        now() - interval '30 seconds', now() - interval '30 seconds', NULL, NULL, NULL),
       ('tgms_send_to_groups', '{"broadcast_id": 7}', 'running', 0, 5, NULL,
        now() - interval '10 seconds', now(), NULL, 'tgms_worker@test:1', now() + interval '1 minute'),
       ('tgms_process_join_request', '{"chat_id": -1001000000002, "user_id": 42}', 'failed', 6, 5,
        'Forbidden: bot was kicked from the supergroup chat', now() - interval '5 minutes',
        now() - interval '1 minute', now() - interval '1 minute', NULL, NULL),
       ('process_telegram_update', '{"update_id": 1}', 'done', 0, 5, NULL,
        now() - interval '20 seconds', now() - interval '5 seconds', now() - interval '5 seconds', NULL, NULL);

INSERT INTO bot_health (worker_id, bot_name, status, updated_at, pid, host, jobs_done, jobs_failed, last_error)
VALUES ('tgms_worker@test:1:aaaaaa', 'tgms_worker', 'running', now(), 1, 'test', 120, 3, NULL),
       ('main_worker@test:2:bbbbbb', 'main_worker', 'running', now() - interval '2 minutes', 2, 'test', 50, 0,
        'connection reset');

INSERT INTO join_requests (user_id, chat_id, username, status, error, requested_at, processed_at)
VALUES (42, -1001000000001, 'alice', 'approved', NULL, now() - interval '3 minutes', now() - interval '3 minutes'),
       (43, -1001000000003, 'bob', 'skipped_inactive', NULL, now() - interval '2 minutes',
        now() - interval '2 minutes'),
       (44, -1001000000002, NULL, 'failed', 'HIDE_REQUESTER_MISSING', now() - interval '1 minute',
        now() - interval '1 minute');

INSERT INTO kick_audit (chat_id, user_id, action, reason, dry_run)
VALUES (-1001000000001, 99, 'would_kick', 'inactive for 31 days', true);
"""


def seed(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SEED_SQL)


def job_id(url: str, job_type: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT job_id FROM jobs WHERE job_type = %s", (job_type,)).fetchone()
        assert row is not None
        return int(row[0])
