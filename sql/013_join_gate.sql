-- The join-request gate: a join policy per group (auto, verify, manual), the anti-raid hold (per group
-- and fleet-wide), and the timestamps of each step a request takes.

ALTER TABLE managed_groups
    ADD COLUMN join_policy         text    NOT NULL DEFAULT 'auto'
        CHECK (join_policy IN ('auto', 'verify', 'manual')),
    -- verify: the private message, an optional question whose first answer is the right one, how long
    -- the requester has to press, and what happens to a requester who fails or cannot be reached.
    ADD COLUMN verify_text         text,
    ADD COLUMN verify_question     text,
    ADD COLUMN verify_answers      jsonb,
    ADD COLUMN verify_timeout_seconds integer NOT NULL DEFAULT 120 CHECK (verify_timeout_seconds BETWEEN 10 AND 86400),
    ADD COLUMN verify_fallback     text    NOT NULL DEFAULT 'decline' CHECK (verify_fallback IN ('decline', 'manual')),
    -- manual (and held) requests still waiting after this many hours are declined; NULL keeps them.
    ADD COLUMN manual_expire_hours integer CHECK (manual_expire_hours > 0),
    -- anti-raid: more requests than this in a minute holds the group (NULL: the fleet's default, 0: off).
    ADD COLUMN raid_per_minute     integer CHECK (raid_per_minute >= 0),
    ADD COLUMN held_since          timestamptz,
    ADD COLUMN held_until          timestamptz;

-- One row: the fleet-wide anti-raid settings and the fleet's hold.
CREATE TABLE join_gate (
    id                 boolean PRIMARY KEY DEFAULT true CHECK (id),
    group_per_minute   integer NOT NULL DEFAULT 0 CHECK (group_per_minute >= 0),
    fleet_per_minute   integer NOT NULL DEFAULT 0 CHECK (fleet_per_minute >= 0),
    calm_seconds       integer NOT NULL DEFAULT 300 CHECK (calm_seconds > 0),
    fleet_held_since   timestamptz,
    fleet_held_until   timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO join_gate DEFAULT VALUES;

-- Requests per group and minute (the raid detector's counter; old minutes are pruned).
CREATE TABLE join_request_rates (
    chat_id   bigint      NOT NULL,
    minute    timestamptz NOT NULL,
    requests  integer     NOT NULL,
    PRIMARY KEY (minute, chat_id)
);

ALTER TABLE join_requests
    ADD COLUMN user_chat_id     bigint,
    ADD COLUMN verify_token     text,
    ADD COLUMN verify_code      text,
    ADD COLUMN dm_message_id    bigint,
    ADD COLUMN dm_sent_at       timestamptz,
    ADD COLUMN answered_at      timestamptz,
    ADD COLUMN queued_at        timestamptz,
    ADD COLUMN held_at          timestamptz,
    ADD COLUMN decision         text,
    ADD COLUMN decided_by       text,
    ADD COLUMN decided_at       timestamptz,
    ADD COLUMN note             text;

CREATE UNIQUE INDEX join_requests_verify_token_idx ON join_requests (verify_token) WHERE verify_token IS NOT NULL;
-- The manual queue: what waits for an operator, oldest first.
CREATE INDEX join_requests_waiting_idx ON join_requests (chat_id, requested_at)
    WHERE status IN ('pending', 'held', 'verifying');

CREATE TRIGGER join_gate_notify_change AFTER INSERT OR UPDATE OR DELETE ON join_gate
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
