-- Outgoing event webhooks ("hooks"): subscriptions, an outbox of events, one delivery per event and
-- subscription, and every attempt. Events are written by the database itself, in the transaction of
-- the change they describe (triggers below, plus tgms_hook_emit called by the backend for the events
-- no single row change carries), so no event is lost when a change commits, and none is invented when
-- it rolls back.
--
-- Ordering: deliveries of one subscription go out in order per lane (the group id, or 'fleet' for
-- fleet-wide events). One job per lane (tgms_deliver_hooks) drains it; hook_lanes.scheduled says a
-- drainer job exists. Inserting a delivery first locks its lane row, so two transactions adding to one
-- lane commit in the order of their delivery ids, and a drainer never sees a later delivery before an
-- earlier one.

CREATE TABLE IF NOT EXISTS hook_subscriptions (
    subscription_id bigserial PRIMARY KEY,
    url             text        NOT NULL,
    events          text[]      NOT NULL,
    -- The HMAC key. Shown once, when the subscription is created; never listed again.
    secret          text        NOT NULL,
    -- active: delivering; paused: by an operator (its pending deliveries wait); failing: paused by TGMS
    -- after 24 hours of failed attempts (its pending deliveries were given up).
    status          text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'failing')),
    status_reason   text,
    created_by      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS hook_events (
    event_id    uuid        PRIMARY KEY,
    seq         bigserial   NOT NULL,
    event_type  text        NOT NULL,
    lane        text        NOT NULL,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    -- The exact bytes every delivery of this event sends (and signs): replays send the same body.
    body        text        NOT NULL
);
CREATE INDEX IF NOT EXISTS hook_events_time_idx ON hook_events (occurred_at, seq);

CREATE TABLE IF NOT EXISTS hook_deliveries (
    delivery_id      bigserial   PRIMARY KEY,
    subscription_id  bigint      NOT NULL REFERENCES hook_subscriptions (subscription_id) ON DELETE CASCADE,
    event_id         uuid        NOT NULL REFERENCES hook_events (event_id) ON DELETE CASCADE,
    event_type       text        NOT NULL,
    lane             text        NOT NULL,
    status           text        NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    first_attempt_at timestamptz,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_latency_ms  double precision,
    last_error       text,
    replay_of        bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX IF NOT EXISTS hook_deliveries_lane_idx ON hook_deliveries (subscription_id, lane, delivery_id)
    WHERE status IN ('pending', 'sending');
CREATE INDEX IF NOT EXISTS hook_deliveries_log_idx ON hook_deliveries (subscription_id, delivery_id DESC);
CREATE INDEX IF NOT EXISTS hook_deliveries_event_idx ON hook_deliveries (event_id);
-- The subscriptions list: delivered in the last 24 hours, the last delivery.
CREATE INDEX IF NOT EXISTS hook_deliveries_delivered_idx ON hook_deliveries (subscription_id, delivered_at)
    WHERE status = 'delivered';

CREATE TABLE IF NOT EXISTS hook_attempts (
    delivery_id bigint      NOT NULL REFERENCES hook_deliveries (delivery_id) ON DELETE CASCADE,
    attempt     integer     NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    latency_ms  double precision,
    status_code integer,
    error       text,
    PRIMARY KEY (delivery_id, attempt)
);

CREATE TABLE IF NOT EXISTS hook_lanes (
    subscription_id bigint  NOT NULL REFERENCES hook_subscriptions (subscription_id) ON DELETE CASCADE,
    lane            text    NOT NULL,
    scheduled       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (subscription_id, lane)
);

-- A new delivery of `p_event` to `p_sub`: lock (and if idle, schedule) its lane first, then insert.
CREATE OR REPLACE FUNCTION tgms_hook_deliver(p_sub bigint, p_event uuid, p_replay_of bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_lane text;
    v_type text;
    v_id bigint;
BEGIN
    SELECT lane, event_type INTO v_lane, v_type FROM hook_events WHERE event_id = p_event;
    IF v_lane IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO hook_lanes AS l (subscription_id, lane, scheduled) VALUES (p_sub, v_lane, true)
    ON CONFLICT (subscription_id, lane) DO UPDATE SET scheduled = true WHERE NOT l.scheduled;
    IF FOUND THEN
        INSERT INTO jobs (job_type, payload, priority, max_retries)
        VALUES ('tgms_deliver_hooks', jsonb_build_object('subscription_id', p_sub, 'lane', v_lane), 5, 20);
    END IF;
    INSERT INTO hook_deliveries (subscription_id, event_id, event_type, lane, replay_of)
    VALUES (p_sub, p_event, v_type, v_lane, p_replay_of)
    RETURNING delivery_id INTO v_id;
    RETURN v_id;
END $$;

-- Record one event (when any subscription asks for its type) and queue it for every active
-- subscription that asks for it. The body is built here, once: {"version", "id", "type",
-- "occurred_at", "data"}, in that order.
CREATE OR REPLACE FUNCTION tgms_hook_emit(p_type text, p_lane text, p_data json)
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
    v_sub bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM hook_subscriptions WHERE p_type = ANY (events)) THEN
        RETURN NULL;
    END IF;
    v_id := gen_random_uuid();
    INSERT INTO hook_events (event_id, event_type, lane, occurred_at, body)
    VALUES (v_id, p_type, p_lane, now(),
            json_build_object('version', 1, 'id', v_id, 'type', p_type,
                              'occurred_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                              'data', p_data)::text);
    FOR v_sub IN
        SELECT subscription_id FROM hook_subscriptions
         WHERE status = 'active' AND p_type = ANY (events) ORDER BY subscription_id
    LOOP
        PERFORM tgms_hook_deliver(v_sub, v_id);
    END LOOP;
    RETURN v_id;
END $$;

-- The next step of a lane's drainer, in one round trip (workers/hooks.py via backend/hooks.py):
-- 'idle' (the lane is empty or its subscription not active: the lane is marked unscheduled), 'wait'
-- (the head is not due, or another drainer holds it: o_wait seconds), or 'send' (the head, leased for
-- p_lease seconds, its attempt number counted).
CREATE OR REPLACE FUNCTION tgms_hook_next(p_sub bigint, p_lane text, p_lease double precision)
RETURNS TABLE (o_kind text, o_delivery_id bigint, o_attempt integer, o_event_type text, o_body text,
               o_url text, o_secret text, o_wait double precision)
LANGUAGE plpgsql AS $$
DECLARE
    v_sub record;
    v_head record;
BEGIN
    PERFORM 1 FROM hook_lanes l WHERE l.subscription_id = p_sub AND l.lane = p_lane FOR UPDATE;
    SELECT s.url, s.secret, s.status INTO v_sub FROM hook_subscriptions s WHERE s.subscription_id = p_sub;
    IF FOUND AND v_sub.status = 'active' THEN
        SELECT d.delivery_id, d.status, d.event_type, e.body,
               GREATEST(0, EXTRACT(EPOCH FROM d.next_attempt_at - now()))::float8 AS wait,
               GREATEST(0, EXTRACT(EPOCH FROM d.lease_until - now()))::float8 AS lease_left
          INTO v_head
          FROM hook_deliveries d JOIN hook_events e ON e.event_id = d.event_id
         WHERE d.subscription_id = p_sub AND d.lane = p_lane AND d.status IN ('pending', 'sending')
         ORDER BY d.delivery_id
         LIMIT 1;
        IF FOUND THEN
            IF v_head.status = 'sending' AND v_head.lease_left > 0 THEN
                RETURN QUERY SELECT 'wait'::text, NULL::bigint, NULL::integer, NULL::text, NULL::text, NULL::text,
                                    NULL::text, v_head.lease_left;
                RETURN;
            END IF;
            IF v_head.wait > 0 THEN
                RETURN QUERY SELECT 'wait'::text, NULL::bigint, NULL::integer, NULL::text, NULL::text, NULL::text,
                                    NULL::text, v_head.wait;
                RETURN;
            END IF;
            RETURN QUERY
            UPDATE hook_deliveries d
               SET status = 'sending', attempts = d.attempts + 1,
                   lease_until = now() + make_interval(secs => p_lease),
                   first_attempt_at = COALESCE(d.first_attempt_at, now()), last_attempt_at = now()
             WHERE d.delivery_id = v_head.delivery_id
            RETURNING 'send'::text, d.delivery_id, d.attempts, v_head.event_type, v_head.body, v_sub.url,
                      v_sub.secret, 0::float8;
            RETURN;
        END IF;
    END IF;
    UPDATE hook_lanes l SET scheduled = false WHERE l.subscription_id = p_sub AND l.lane = p_lane;
    RETURN QUERY SELECT 'idle'::text, NULL::bigint, NULL::integer, NULL::text, NULL::text, NULL::text, NULL::text,
                        0::float8;
END $$;

-- Groups: registered (a new row), deactivated / reactivated (is_active flips), member count changed.
-- A group id rewrite (upgrade to a supergroup) moves rows without any of these: it emits
-- group.migrated itself and sets tgms.hooks_migrating for its transaction.
CREATE OR REPLACE FUNCTION tgms_hook_group_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF COALESCE(current_setting('tgms.hooks_migrating', true), '') <> '' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        PERFORM tgms_hook_emit('group.registered', NEW.group_id::text,
            json_build_object('group_id', NEW.group_id, 'title', NEW.title, 'chat_type', NEW.chat_type,
                              'phase', NEW.phase, 'is_active', NEW.is_active,
                              'member_count', NEW.member_count));
        RETURN NULL;
    END IF;
    IF OLD.is_active AND NOT NEW.is_active THEN
        PERFORM tgms_hook_emit('group.deactivated', NEW.group_id::text,
            json_build_object('group_id', NEW.group_id, 'title', NEW.title,
                              'reason', NEW.deactivated_reason));
    ELSIF NOT OLD.is_active AND NEW.is_active THEN
        PERFORM tgms_hook_emit('group.reactivated', NEW.group_id::text,
            json_build_object('group_id', NEW.group_id, 'title', NEW.title));
    END IF;
    IF NEW.member_count IS DISTINCT FROM OLD.member_count AND NEW.member_count IS NOT NULL THEN
        PERFORM tgms_hook_emit('group.member_count', NEW.group_id::text,
            json_build_object('group_id', NEW.group_id, 'member_count', NEW.member_count,
                              'previous', OLD.member_count, 'change', NEW.member_count - OLD.member_count));
    END IF;
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS managed_groups_hook_insert ON managed_groups;
CREATE TRIGGER managed_groups_hook_insert AFTER INSERT ON managed_groups
    FOR EACH ROW EXECUTE FUNCTION tgms_hook_group_events();
DROP TRIGGER IF EXISTS managed_groups_hook_update ON managed_groups;
CREATE TRIGGER managed_groups_hook_update AFTER UPDATE OF is_active, member_count ON managed_groups
    FOR EACH ROW
    WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active OR OLD.member_count IS DISTINCT FROM NEW.member_count)
    EXECUTE FUNCTION tgms_hook_group_events();

-- A broadcast reached a final status: its copies counted per status at that moment.
CREATE OR REPLACE FUNCTION tgms_hook_broadcast_finished() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_counts json;
BEGIN
    SELECT json_build_object(
               'sent', count(*) FILTER (WHERE status = 'sent'),
               'failed', count(*) FILTER (WHERE status = 'failed'),
               'ambiguous', count(*) FILTER (WHERE status = 'ambiguous'),
               'skipped', count(*) FILTER (WHERE status = 'skipped'),
               'pending', count(*) FILTER (WHERE status IN ('pending', 'sending')))
      INTO v_counts
      FROM sent_messages WHERE broadcast_id = NEW.broadcast_id;
    PERFORM tgms_hook_emit('broadcast.finished', 'fleet',
        json_build_object('broadcast_id', NEW.broadcast_id, 'status', NEW.status, 'is_final', NEW.is_final,
                          'error', NEW.error, 'started_at', NEW.started_at, 'finished_at', NEW.finished_at,
                          'counts', v_counts));
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS broadcasts_hook_finished ON broadcasts;
CREATE TRIGGER broadcasts_hook_finished AFTER UPDATE OF status ON broadcasts
    FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status AND NEW.status IN ('done', 'stopped', 'failed', 'cancelled'))
    EXECUTE FUNCTION tgms_hook_broadcast_finished();

-- A join request got its outcome (processed_at is set once, with the final status).
CREATE OR REPLACE FUNCTION tgms_hook_join_request_decided() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM tgms_hook_emit('join_request.decided', NEW.chat_id::text,
        json_build_object('request_id', NEW.request_id, 'group_id', NEW.chat_id, 'user_id', NEW.user_id,
                          'username', NEW.username, 'status', NEW.status,
                          'requested_at', NEW.requested_at, 'decided_at', NEW.processed_at));
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS join_requests_hook_insert ON join_requests;
CREATE TRIGGER join_requests_hook_insert AFTER INSERT ON join_requests
    FOR EACH ROW WHEN (NEW.processed_at IS NOT NULL)
    EXECUTE FUNCTION tgms_hook_join_request_decided();
DROP TRIGGER IF EXISTS join_requests_hook_update ON join_requests;
CREATE TRIGGER join_requests_hook_update AFTER UPDATE OF processed_at ON join_requests
    FOR EACH ROW WHEN (OLD.processed_at IS NULL AND NEW.processed_at IS NOT NULL)
    EXECUTE FUNCTION tgms_hook_join_request_decided();

-- The TUI's hooks screen refreshes on changes, as the other screens do.
DROP TRIGGER IF EXISTS hook_deliveries_notify_change ON hook_deliveries;
CREATE TRIGGER hook_deliveries_notify_change AFTER INSERT OR UPDATE OR DELETE ON hook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
DROP TRIGGER IF EXISTS hook_subscriptions_notify_change ON hook_subscriptions;
CREATE TRIGGER hook_subscriptions_notify_change AFTER INSERT OR UPDATE OR DELETE ON hook_subscriptions
    FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_change();
