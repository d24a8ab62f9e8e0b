-- The join decisions sweep (`tgms_join_decisions_sweep`, every TGMS_JOB_LEASE_SECONDS) starts from
-- the jobs that ended failed or cancelled, of two types: an operator's decision jobs and the single
-- join requests' jobs. Those are few, but jobs_history holds days of finished jobs (millions) and no
-- index found the cancelled ones, so a sweep read a whole table (jobs_history, or join_requests when
-- the planner started from there). This index holds only the ended rows: a sweep reads a few entries.
CREATE INDEX IF NOT EXISTS jobs_history_ended_idx ON jobs_history (job_type, updated_at)
    WHERE status IN ('failed', 'cancelled');
