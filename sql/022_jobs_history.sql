-- The queue's hot table stays small: pending and running jobs live in `jobs_active`, finished ones
-- (done, failed, cancelled) in `jobs_history`, and `jobs` is a view of both, so every query written
-- against `jobs` (the seed's monitoring queries, the control center, scripts) reads as before.
--
-- Why: claims, completions and the webhook's inserts touch only jobs_active, which holds seconds to
-- minutes of work whatever the history. With finished jobs in the same table (kept 7 days), the
-- table and its indexes outgrew shared_buffers at 10 million jobs: new rows went into free space
-- scattered over gigabytes and claim throughput halved. jobs_history only grows at its end (rows
-- arrive in finishing order) and is pruned from its start.
--
-- A job moves once, in the statement that finishes it (DELETE ... RETURNING feeding an INSERT), and
-- back when an operator retries it. Its job_id never changes. Writes through the view (INSERT,
-- UPDATE, DELETE on `jobs`) still work, routed by status, for scripts and tests; the queue itself
-- writes the two tables directly.
--
-- Dedupe keys: "one job per key for as long as its row exists" spans both tables, so the keys live
-- in `job_dedupe_keys` (a job's key is inserted with it and deleted when it is pruned); a unique
-- index per table could not see the other table.
--
-- Upgrading renames the old table (all its rows are history but for the few unfinished ones, which
-- move), so the migration costs one scan of the old table, not a copy.

ALTER TABLE jobs RENAME TO jobs_history;
DROP TRIGGER IF EXISTS jobs_notify_insert ON jobs_history;
DROP TRIGGER IF EXISTS jobs_notify_change ON jobs_history;

CREATE TABLE jobs_active (LIKE jobs_history INCLUDING DEFAULTS INCLUDING GENERATED INCLUDING CONSTRAINTS)
    WITH (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.0, autovacuum_vacuum_threshold = 1000,
          autovacuum_vacuum_cost_delay = 0, autovacuum_analyze_scale_factor = 0.0,
          autovacuum_analyze_threshold = 1000);
ALTER TABLE jobs_active ADD PRIMARY KEY (job_id);
ALTER TABLE jobs_active ADD CONSTRAINT jobs_active_status_check CHECK (status IN ('pending', 'running'));
ALTER SEQUENCE jobs_job_id_seq OWNED BY jobs_active.job_id;

INSERT INTO jobs_active (job_id, job_type, payload, status, retries, max_retries, priority, run_at, locked_by,
                         locked_until, last_error, dedupe_key, created_at, updated_at, finished_at)
SELECT job_id, job_type, payload, status, retries, max_retries, priority, run_at, locked_by, locked_until,
       last_error, dedupe_key, created_at, updated_at, finished_at
  FROM jobs_history WHERE status IN ('pending', 'running');
DELETE FROM jobs_history WHERE status IN ('pending', 'running');

UPDATE jobs_active SET finished_at = NULL WHERE finished_at IS NOT NULL;
-- Unfinished jobs have no finish time: queries on recent finished jobs (`finished_at > ...`) leave
-- jobs_active out, as they leave jobs_history out for `status = 'pending'` (below).
ALTER TABLE jobs_active ADD CONSTRAINT jobs_active_unfinished_check CHECK (finished_at IS NULL);

ALTER TABLE jobs_history ALTER COLUMN job_id DROP DEFAULT;
-- Validated, so that the planner leaves jobs_history out of `jobs WHERE status = 'pending'` (and
-- jobs_active out of `status = 'failed'`): constraint exclusion applies to UNION ALL views.
ALTER TABLE jobs_history ADD CONSTRAINT jobs_history_status_check CHECK (status IN ('done', 'failed', 'cancelled'));
ALTER TABLE jobs_history SET (fillfactor = 100, autovacuum_vacuum_scale_factor = 0.02);

-- The hot table's indexes move with it; the history keeps the ones for finished rows.
DROP INDEX IF EXISTS jobs_claim_idx;
DROP INDEX IF EXISTS jobs_next_run_idx;
DROP INDEX IF EXISTS jobs_lease_idx;
CREATE INDEX jobs_active_claim_idx ON jobs_active (pool, priority, run_at, job_id) WHERE status = 'pending';
CREATE INDEX jobs_active_next_run_idx ON jobs_active (pool, run_at) WHERE status = 'pending';
CREATE INDEX jobs_active_lease_idx ON jobs_active (locked_until) WHERE status = 'running';
CREATE UNIQUE INDEX jobs_active_dedupe_idx ON jobs_active (dedupe_key) WHERE dedupe_key IS NOT NULL;
DROP INDEX IF EXISTS jobs_dedupe_idx;

CREATE TABLE job_dedupe_keys (
    dedupe_key text PRIMARY KEY
);
INSERT INTO job_dedupe_keys SELECT dedupe_key FROM jobs_active WHERE dedupe_key IS NOT NULL
    UNION SELECT dedupe_key FROM jobs_history WHERE dedupe_key IS NOT NULL;

CREATE VIEW jobs AS
    SELECT * FROM jobs_active
    UNION ALL
    SELECT * FROM jobs_history;
ALTER VIEW jobs ALTER COLUMN job_id SET DEFAULT nextval('jobs_job_id_seq');
ALTER VIEW jobs ALTER COLUMN payload SET DEFAULT '{}'::jsonb;
ALTER VIEW jobs ALTER COLUMN status SET DEFAULT 'pending';
ALTER VIEW jobs ALTER COLUMN retries SET DEFAULT 0;
ALTER VIEW jobs ALTER COLUMN max_retries SET DEFAULT 5;
ALTER VIEW jobs ALTER COLUMN priority SET DEFAULT 0;
ALTER VIEW jobs ALTER COLUMN run_at SET DEFAULT now();
ALTER VIEW jobs ALTER COLUMN created_at SET DEFAULT now();
ALTER VIEW jobs ALTER COLUMN updated_at SET DEFAULT now();

-- Writes through the view, one row at a time: for scripts and tests, not the queue's hot path.
CREATE FUNCTION tgms_jobs_view_write() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was_active boolean;
    now_active boolean;
BEGIN
    PERFORM pg_notify('tgms_changes', 'jobs');  -- a script's change shows in the control center at once
    IF TG_OP = 'DELETE' THEN
        DELETE FROM jobs_active WHERE job_id = OLD.job_id;
        IF NOT FOUND THEN
            DELETE FROM jobs_history WHERE job_id = OLD.job_id;
        END IF;
        IF OLD.dedupe_key IS NOT NULL THEN
            DELETE FROM job_dedupe_keys WHERE dedupe_key = OLD.dedupe_key;
        END IF;
        RETURN OLD;
    END IF;
    NEW.pool := CASE WHEN starts_with(NEW.job_type, 'tgms_') THEN 'tgms' ELSE 'main' END;
    now_active := NEW.status IN ('pending', 'running');
    IF TG_OP = 'INSERT' THEN
        IF NEW.dedupe_key IS NOT NULL THEN
            INSERT INTO job_dedupe_keys VALUES (NEW.dedupe_key) ON CONFLICT DO NOTHING;
            IF NOT FOUND THEN
                RETURN NULL;  -- a job with this key exists: nothing inserted
            END IF;
        END IF;
    ELSE
        was_active := OLD.status IN ('pending', 'running');
        IF was_active = now_active THEN
            IF now_active THEN
                UPDATE jobs_active SET job_id = NEW.job_id, job_type = NEW.job_type, payload = NEW.payload,
                       status = NEW.status, retries = NEW.retries, max_retries = NEW.max_retries,
                       priority = NEW.priority, run_at = NEW.run_at, locked_by = NEW.locked_by,
                       locked_until = NEW.locked_until, last_error = NEW.last_error, dedupe_key = NEW.dedupe_key,
                       created_at = NEW.created_at, updated_at = NEW.updated_at
                 WHERE job_id = OLD.job_id;
            ELSE
                UPDATE jobs_history SET job_id = NEW.job_id, job_type = NEW.job_type, payload = NEW.payload,
                       status = NEW.status, retries = NEW.retries, max_retries = NEW.max_retries,
                       priority = NEW.priority, run_at = NEW.run_at, locked_by = NEW.locked_by,
                       locked_until = NEW.locked_until, last_error = NEW.last_error, dedupe_key = NEW.dedupe_key,
                       created_at = NEW.created_at, updated_at = NEW.updated_at, finished_at = NEW.finished_at
                 WHERE job_id = OLD.job_id;
            END IF;
            RETURN NEW;
        END IF;
        IF was_active THEN
            DELETE FROM jobs_active WHERE job_id = OLD.job_id;
        ELSE
            DELETE FROM jobs_history WHERE job_id = OLD.job_id;
        END IF;
    END IF;
    IF now_active THEN
        INSERT INTO jobs_active (job_id, job_type, payload, status, retries, max_retries, priority, run_at,
                                 locked_by, locked_until, last_error, dedupe_key, created_at, updated_at, finished_at)
        VALUES (NEW.job_id, NEW.job_type, NEW.payload, NEW.status, NEW.retries, NEW.max_retries, NEW.priority,
                NEW.run_at, NEW.locked_by, NEW.locked_until, NEW.last_error, NEW.dedupe_key, NEW.created_at,
                NEW.updated_at, NULL);
    ELSE
        INSERT INTO jobs_history (job_id, job_type, payload, status, retries, max_retries, priority, run_at,
                                  locked_by, locked_until, last_error, dedupe_key, created_at, updated_at, finished_at)
        VALUES (NEW.job_id, NEW.job_type, NEW.payload, NEW.status, NEW.retries, NEW.max_retries, NEW.priority,
                NEW.run_at, NEW.locked_by, NEW.locked_until, NEW.last_error, NEW.dedupe_key, NEW.created_at,
                NEW.updated_at, COALESCE(NEW.finished_at, now()));
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER jobs_view_insert INSTEAD OF INSERT ON jobs FOR EACH ROW EXECUTE FUNCTION tgms_jobs_view_write();
CREATE TRIGGER jobs_view_update INSTEAD OF UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION tgms_jobs_view_write();
CREATE TRIGGER jobs_view_delete INSTEAD OF DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION tgms_jobs_view_write();

-- Wake-ups: one channel per pool, `tgms_jobs_main` and `tgms_jobs_tgms`, so a worker is told only
-- of its own pool's jobs. Payload '' for jobs due now, '+<seconds>' for the earliest of those
-- scheduled later (006_notify_when_due.sql explains the seconds). Within a pool only one idle
-- worker listens at a time (docs/workers.md: the watch); `tgms_jobs` keeps the operators'
-- "cancel:<job_id>" notices, which every worker hears.
CREATE OR REPLACE FUNCTION tgms_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT pool, bool_or(run_at <= now()) AS due, min(run_at) FILTER (WHERE run_at > now()) AS later
               FROM new_rows WHERE status = 'pending' GROUP BY pool LOOP
        IF r.due THEN
            PERFORM pg_notify('tgms_jobs_' || r.pool, '');
        END IF;
        IF r.later IS NOT NULL THEN
            PERFORM pg_notify('tgms_jobs_' || r.pool, '+' || extract(epoch FROM r.later - now())::text);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;

CREATE TRIGGER jobs_active_notify_insert AFTER INSERT ON jobs_active
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tgms_jobs_notify();

-- Live views: no per-statement 'jobs' NOTIFY on the queue's tables any more. PostgreSQL signals
-- every listening session of the database for every NOTIFY, whatever its channel, so one per claim,
-- completion and insert woke every worker's listener several times per job. Workers announce job
-- changes on 'tgms_changes' at most once a second instead, the operators' actions (cancel, retry,
-- reschedule, prune) and writes through the `jobs` view announce theirs; the control center also
-- refreshes its jobs pane on a timer.
