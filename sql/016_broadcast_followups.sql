-- Follow-up actions on a broadcast already sent (or partly sent): edit its copies, retract (delete)
-- them, pin or unpin them. One broadcast_followups row per request, one broadcast_followup_groups row
-- per copy it concerns, created with the job that carries it out (tgms_broadcast_followup).
-- A copy is found through sent_messages, so a group's id rewritten by its migration to a supergroup
-- is followed without anything here to rewrite.
CREATE TABLE broadcast_followups (
    followup_id  bigserial PRIMARY KEY,
    broadcast_id bigint      NOT NULL REFERENCES broadcasts (broadcast_id) ON DELETE CASCADE,
    action       text        NOT NULL CHECK (action IN ('edit', 'retract', 'pin', 'unpin')),
    -- edit: the new text or caption (without the debug code, which every copy keeps)
    text         text,
    caption      text,
    parse_mode   text,
    -- pin: without a notification to the members
    silent       boolean     NOT NULL DEFAULT false,
    requested_by text        NOT NULL,
    job_id       bigint,
    run_at       timestamptz NOT NULL DEFAULT now(),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX broadcast_followups_broadcast_idx ON broadcast_followups (broadcast_id);

-- pending: not tried; doing: the intent is recorded and the call under way; done; failed (+ error);
-- skipped (+ why: too old to delete, the copy was never delivered...); ambiguous: the worker died
-- between the call and its record, so the outcome is unknown and the call is never repeated.
CREATE TABLE broadcast_followup_groups (
    followup_id     bigint      NOT NULL REFERENCES broadcast_followups (followup_id) ON DELETE CASCADE,
    sent_message_id bigint      NOT NULL REFERENCES sent_messages (message_id) ON DELETE CASCADE,
    status          text        NOT NULL DEFAULT 'pending'
                        CHECK (status IN ('pending', 'doing', 'done', 'failed', 'skipped', 'ambiguous')),
    error           text,
    attempts        integer     NOT NULL DEFAULT 0,
    locked_by       text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (followup_id, sent_message_id)
);
CREATE INDEX broadcast_followup_groups_todo_idx ON broadcast_followup_groups (followup_id)
    WHERE status IN ('pending', 'doing');

-- A broadcast's copies are retracted this long after it starts (NULL: kept).
ALTER TABLE broadcasts ADD COLUMN delete_after interval;
