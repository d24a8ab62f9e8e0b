-- Analytics: an hourly rollup of the fleet's figures (charts over 30 days read a few hundred rows,
-- not millions), a daily snapshot of each group's active members (member_activity only knows when a
-- member was last seen, so the past is kept by taking snapshots), and the indexes the per-group
-- chart queries need. Filled by the main pool's `analytics_rollup` job.

CREATE TABLE analytics_fleet_hourly (
    hour              timestamptz PRIMARY KEY,      -- the hour's start (UTC)
    members           bigint      NOT NULL,         -- sum of each counted group's last reading before the hour's end
    groups            integer     NOT NULL,         -- groups counted (a reading, not deactivated by then)
    active_members    bigint,                       -- members seen in the 24 h before a snapshot taken in this hour (NULL: none taken)
    joins_approved    integer     NOT NULL,         -- join requests decided in the hour, by outcome
    joins_declined    integer     NOT NULL,
    joins_other       integer     NOT NULL,         -- expired, failed, already a member, skipped
    deliveries_sent   integer     NOT NULL,         -- broadcast copies delivered / failed in the hour
    deliveries_failed integer     NOT NULL,
    complete          boolean     NOT NULL,         -- rolled after the hour ended (else rolled again)
    rolled_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE analytics_group_daily (
    group_id       bigint  NOT NULL,
    day            date    NOT NULL,                -- UTC day of the snapshot; the day's last one stays
    active_members integer NOT NULL,
    rolled_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, day)
);

-- One group's decided join requests over a window (the chart), and failed copies by time (the rollup;
-- delivered ones have sent_messages_sent_at_idx).
CREATE INDEX join_requests_chat_processed_idx ON join_requests (chat_id, processed_at)
    WHERE processed_at IS NOT NULL;
CREATE INDEX sent_messages_failed_at_idx ON sent_messages (updated_at) WHERE status = 'failed';
