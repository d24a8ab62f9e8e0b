-- TGMS core schema. Table and column names from the seed guide are kept verbatim
-- (they are our users' contract); everything else is additive.

-- ---------------------------------------------------------------- job queue
CREATE TABLE jobs (
    job_id        bigserial PRIMARY KEY,
    job_type      text        NOT NULL,
    -- Exact-prefix routing: LIKE 'tgms_%' would also match 'tgmsX...' ('_' is a wildcard).
    pool          text        GENERATED ALWAYS AS
                      (CASE WHEN starts_with(job_type, 'tgms_') THEN 'tgms' ELSE 'main' END) STORED,
    payload       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status        text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'done', 'failed', 'cancelled')),
    retries       integer     NOT NULL DEFAULT 0,
    max_retries   integer     NOT NULL DEFAULT 5,
    priority      integer     NOT NULL DEFAULT 0,
    run_at        timestamptz NOT NULL DEFAULT now(),
    locked_by     text,
    locked_until  timestamptz,
    last_error    text,
    dedupe_key    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
) WITH (fillfactor = 80);

-- The claim path: only pending rows, in claim order, per pool.
CREATE INDEX jobs_claim_idx ON jobs (pool, priority, run_at, job_id) WHERE status = 'pending';
-- When the next scheduled job of a pool is due (how long an idle worker may sleep).
CREATE INDEX jobs_next_run_idx ON jobs (pool, run_at) WHERE status = 'pending';
-- Lease reaping: only running rows.
CREATE INDEX jobs_lease_idx ON jobs (locked_until) WHERE status = 'running';
-- Pruning and "recent finished" views.
CREATE INDEX jobs_finished_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_failed_idx ON jobs (updated_at) WHERE status = 'failed';
-- A dedupe key makes one job for as long as its row exists (periodic work uses a key per period).
CREATE UNIQUE INDEX jobs_dedupe_idx ON jobs (dedupe_key) WHERE dedupe_key IS NOT NULL;

ALTER TABLE jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_cost_delay = 0,
                      autovacuum_analyze_scale_factor = 0.02);

-- Wake workers: one NOTIFY per statement and pool (not per row), payload = pool name.
CREATE FUNCTION tgms_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE p text;
BEGIN
    FOR p IN SELECT DISTINCT pool FROM new_rows WHERE status = 'pending' LOOP
        PERFORM pg_notify('tgms_jobs', p);
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tgms_jobs_notify();

-- Live views (the TUI) listen on one channel; payload = table name, one NOTIFY per statement.
CREATE FUNCTION tgms_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tgms_changes', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_notify_change AFTER INSERT OR UPDATE OR DELETE ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();

-- ---------------------------------------------------------------- groups
CREATE TABLE managed_groups (
    group_id              bigint PRIMARY KEY,
    admin_user_id         bigint,
    title                 text        NOT NULL DEFAULT '',
    chat_type             text        NOT NULL DEFAULT 'supergroup'
                              CHECK (chat_type IN ('group', 'supergroup', 'channel')),
    phase                 text        NOT NULL DEFAULT 'growth' CHECK (phase IN ('growth', 'monitoring')),
    is_active             boolean     NOT NULL DEFAULT true,
    final_message_allowed boolean     NOT NULL DEFAULT false,
    member_count          integer,
    consecutive_failures  integer     NOT NULL DEFAULT 0,
    deactivated_reason    text,
    deactivated_at        timestamptz,
    -- Inactive-member kicking is opt-in: NULL = off, else the threshold in days.
    inactivity_days       integer CHECK (inactivity_days IS NULL OR inactivity_days > 0),
    bot_can_invite        boolean,
    last_broadcast_at     timestamptz,
    member_count_at       timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX managed_groups_active_idx ON managed_groups (phase) WHERE is_active;

CREATE TABLE member_count_history (
    id           bigserial PRIMARY KEY,
    group_id     bigint      NOT NULL,
    member_count integer     NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX member_count_history_group_idx ON member_count_history (group_id, recorded_at DESC);

-- ---------------------------------------------------------------- join requests
CREATE TABLE join_requests (
    request_id   bigserial PRIMARY KEY,
    user_id      bigint      NOT NULL,
    chat_id      bigint      NOT NULL,
    username     text,
    status       text        NOT NULL,
    error        text,
    bot          text,
    job_id       bigint,
    requested_at timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
-- One request of a user to a chat at one moment: re-running its job never logs twice.
CREATE UNIQUE INDEX join_requests_natural_idx ON join_requests (chat_id, user_id, requested_at);
CREATE INDEX join_requests_recent_idx ON join_requests (processed_at DESC NULLS LAST);

-- ---------------------------------------------------------------- broadcasts
CREATE TABLE broadcasts (
    broadcast_id  bigserial PRIMARY KEY,
    text          text,
    photo_url     text,
    caption       text,
    parse_mode    text CHECK (parse_mode IS NULL OR parse_mode IN ('Markdown', 'MarkdownV2', 'HTML')),
    -- {"kind": "all"} | {"kind": "phase", "phase": "growth"} | {"kind": "groups", "group_ids": [...]}
    target        jsonb       NOT NULL DEFAULT '{"kind": "all"}'::jsonb,
    is_final      boolean     NOT NULL DEFAULT false,
    send_at       timestamptz,
    status        text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'running', 'done', 'stopped', 'failed', 'cancelled')),
    error         text,
    created_by    text,
    job_id        bigint,
    created_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    CHECK ((text IS NOT NULL) <> (photo_url IS NOT NULL))
);

CREATE TABLE sent_messages (
    message_id          bigserial PRIMARY KEY,
    broadcast_id        bigint REFERENCES broadcasts (broadcast_id) ON DELETE CASCADE,
    chat_id             bigint      NOT NULL,
    telegram_message_id bigint,
    debug_code          text        NOT NULL UNIQUE,
    -- pending: not tried yet; sending: intent recorded, call under way; sent; failed; ambiguous: the
    -- call's outcome is unknown (crash between call and record) so it is never resent; skipped.
    status              text        NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'ambiguous', 'skipped')),
    error               text,
    attempts            integer     NOT NULL DEFAULT 0,
    locked_by           text,
    sent_at             timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (broadcast_id, chat_id)
);
CREATE INDEX sent_messages_sent_at_idx ON sent_messages (sent_at DESC NULLS LAST);
CREATE INDEX sent_messages_chat_idx ON sent_messages (chat_id);
CREATE INDEX sent_messages_todo_idx ON sent_messages (broadcast_id, message_id) WHERE status = 'pending';

-- ---------------------------------------------------------------- worker health
-- One row per worker process; the seed's query (WHERE bot_name = 'tgms_worker') lists every instance.
CREATE TABLE bot_health (
    worker_id     text PRIMARY KEY,
    bot_name      text        NOT NULL,
    status        text        NOT NULL,
    last_activity timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    pid           integer,
    host          text,
    started_at    timestamptz NOT NULL DEFAULT now(),
    jobs_done     bigint      NOT NULL DEFAULT 0,
    jobs_failed   bigint      NOT NULL DEFAULT 0,
    last_error    text
);
CREATE INDEX bot_health_name_idx ON bot_health (bot_name);

-- ---------------------------------------------------------------- member activity and kicks
CREATE TABLE member_activity (
    chat_id      bigint      NOT NULL,
    user_id      bigint      NOT NULL,
    username     text,
    -- member, administrator, creator, left, kicked, restricted (as Telegram names them)
    status       text        NOT NULL DEFAULT 'member',
    is_bot       boolean     NOT NULL DEFAULT false,
    first_seen_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX member_activity_last_seen_idx ON member_activity (chat_id, last_seen_at);

CREATE TABLE kick_audit (
    id         bigserial PRIMARY KEY,
    chat_id    bigint      NOT NULL,
    user_id    bigint      NOT NULL,
    -- kicked, would_kick (dry run), skipped_owner, skipped_admin, skipped_bot, failed
    action     text        NOT NULL,
    reason     text,
    dry_run    boolean     NOT NULL DEFAULT false,
    job_id     bigint,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX kick_audit_chat_idx ON kick_audit (chat_id, at DESC);

-- ---------------------------------------------------------------- webhook intake
-- Telegram redelivers until it gets a 2xx and drops updates after 24 h: keep ids >= 48 h.
CREATE TABLE webhook_updates (
    bot          text        NOT NULL,
    update_id    bigint      NOT NULL,
    update_type  text        NOT NULL,
    job_id       bigint,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (bot, update_id)
);
CREATE INDEX webhook_updates_received_idx ON webhook_updates (received_at);

-- ---------------------------------------------------------------- rate limits
-- Token buckets shared by every worker process; consumed with one conditional UPDATE.
CREATE TABLE rate_buckets (
    key            text PRIMARY KEY,
    tokens         double precision NOT NULL,
    capacity       double precision NOT NULL,
    refill_per_sec double precision NOT NULL,
    updated_at     timestamptz      NOT NULL DEFAULT clock_timestamp(),
    paused_until   timestamptz
);

-- ---------------------------------------------------------------- live-view notifications
CREATE TRIGGER managed_groups_notify_change AFTER INSERT OR UPDATE OR DELETE ON managed_groups
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
CREATE TRIGGER join_requests_notify_change AFTER INSERT OR UPDATE OR DELETE ON join_requests
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
CREATE TRIGGER broadcasts_notify_change AFTER INSERT OR UPDATE OR DELETE ON broadcasts
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
CREATE TRIGGER sent_messages_notify_change AFTER INSERT OR UPDATE OR DELETE ON sent_messages
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
CREATE TRIGGER bot_health_notify_change AFTER INSERT OR UPDATE OR DELETE ON bot_health
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
CREATE TRIGGER kick_audit_notify_change AFTER INSERT OR UPDATE OR DELETE ON kick_audit
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
