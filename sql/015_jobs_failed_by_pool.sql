-- The control center counts failed jobs per pool on every refresh (every 2 s). Failed jobs stay
-- until pruned (TGMS_JOB_RETENTION_DAYS), so the count grows with the history: through
-- jobs_failed_idx (updated_at) it read every failed row from the table (19 ms for 30,000 failed
-- jobs, ~10x that at 10 million jobs). With the pool in a partial index of its own the count is an
-- index-only scan (2 ms for 30,000). Only rows that become 'failed' enter it, so claims and
-- completions do not pay for it. Building it reads the jobs table once, holding off writes to jobs
-- for that time (seconds on millions of rows; the webhook answers 503 meanwhile and Telegram
-- redelivers).
CREATE INDEX IF NOT EXISTS jobs_failed_pool_idx ON jobs (pool) WHERE status = 'failed';
