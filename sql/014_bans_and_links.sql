-- One ban list for the fleet, and invite-link attribution.

-- 1) The ban list. One row per ban; a user has at most one open ban (not lifted). A ban is in force
--    while it is open and its `until` (Telegram's until_date) has not passed: the join-request
--    handler checks that with one lookup on the partial unique index.
CREATE TABLE IF NOT EXISTS fleet_bans (
    ban_id      bigserial   PRIMARY KEY,
    user_id     bigint      NOT NULL,
    reason      text        NOT NULL,
    banned_by   text        NOT NULL,          -- cli:<login>, api:<address>, tui:<login>
    banned_at   timestamptz NOT NULL DEFAULT now(),
    until       timestamptz,                   -- NULL: for ever
    lifted_at   timestamptz,
    lifted_by   text,
    job_id      bigint,                        -- the job applying the ban
    lift_job_id bigint                         -- the job lifting it
);
CREATE UNIQUE INDEX IF NOT EXISTS fleet_bans_open_idx ON fleet_bans (user_id) WHERE lifted_at IS NULL;
CREATE INDEX IF NOT EXISTS fleet_bans_recent_idx ON fleet_bans (banned_at DESC);

-- 2) Where a ban (or its lifting) was applied: one row per (ban, action, group), like a broadcast's
--    deliveries. 'applying' is a claim; banChatMember and unbanChatMember are idempotent, so a claim
--    left by a dead worker is simply taken again once it is older than a lease.
CREATE TABLE IF NOT EXISTS fleet_ban_groups (
    ban_id     bigint      NOT NULL REFERENCES fleet_bans (ban_id) ON DELETE CASCADE,
    action     text        NOT NULL CHECK (action IN ('ban', 'unban')),
    group_id   bigint      NOT NULL,
    status     text        NOT NULL DEFAULT 'pending'
                           CHECK (status IN ('pending', 'applying', 'done', 'failed', 'skipped')),
    bot        text,
    error      text,
    attempts   integer     NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (ban_id, action, group_id)
);
CREATE INDEX IF NOT EXISTS fleet_ban_groups_todo_idx ON fleet_ban_groups (ban_id, action)
    WHERE status IN ('pending', 'applying');

-- 3) Named invite links (the source of a join), one row per (name, group). The link is Telegram's
--    URL once created. 'pending' waits to be created, 'revoking' to be revoked; `claimed_at` marks
--    the worker doing it (a claim older than a lease is taken again).
CREATE TABLE IF NOT EXISTS invite_links (
    link_id     bigserial   PRIMARY KEY,
    name        text        NOT NULL,
    group_id    bigint      NOT NULL,
    invite_link text,
    status      text        NOT NULL DEFAULT 'pending'
                            CHECK (status IN ('pending', 'active', 'failed', 'revoking', 'revoked')),
    bot         text,
    error       text,
    created_by  text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    claimed_at  timestamptz,
    revoked_at  timestamptz
);
-- One live link per name and group; a revoked or failed one may be made again.
CREATE UNIQUE INDEX IF NOT EXISTS invite_links_live_idx ON invite_links (name, group_id)
    WHERE status IN ('pending', 'active', 'revoking');
CREATE UNIQUE INDEX IF NOT EXISTS invite_links_url_idx ON invite_links (invite_link) WHERE invite_link IS NOT NULL;

-- 4) The link a join request came through, as the bot received it (whole for the link's creator,
--    "https://t.me/+abcd..." for another administrator bot).
ALTER TABLE join_requests ADD COLUMN IF NOT EXISTS invite_link text;
CREATE INDEX IF NOT EXISTS join_requests_invite_link_idx ON join_requests (invite_link) WHERE invite_link IS NOT NULL;

-- 5) Who joined through a link and when they left (from chat_member updates), for retention.
CREATE TABLE IF NOT EXISTS invite_link_members (
    chat_id     bigint      NOT NULL,
    user_id     bigint      NOT NULL,
    invite_link text        NOT NULL,
    joined_at   timestamptz NOT NULL,
    left_at     timestamptz,
    PRIMARY KEY (chat_id, user_id, joined_at)
);
CREATE INDEX IF NOT EXISTS invite_link_members_link_idx ON invite_link_members (invite_link);
CREATE INDEX IF NOT EXISTS invite_link_members_open_idx ON invite_link_members (chat_id, user_id) WHERE left_at IS NULL;

CREATE TRIGGER fleet_bans_notify_change AFTER INSERT OR UPDATE OR DELETE ON fleet_bans
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
CREATE TRIGGER fleet_ban_groups_notify_change AFTER INSERT OR UPDATE OR DELETE ON fleet_ban_groups
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
CREATE TRIGGER invite_links_notify_change AFTER INSERT OR UPDATE OR DELETE ON invite_links
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
