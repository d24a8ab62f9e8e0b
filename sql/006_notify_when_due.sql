-- Workers plan their idle sleep from the notifications alone. Before, a NOTIFY said only which pool got
-- jobs, so a worker woken for a job another worker took (every job, with two workers of a pool) asked the
-- database when the next job was due. Now jobs due at once notify `pool` (as before), and jobs scheduled
-- for later notify `pool+<seconds until the earliest run_at>`, so workers learn of scheduled work
-- without a query. The seconds count from the transaction's start, so a worker may wake a little early
-- (it then asks the database), never late, and no two machines' clocks are compared. (A worker that
-- does not know the second form ignores it and finds those jobs by its poll.)
CREATE OR REPLACE FUNCTION tgms_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE r record;
BEGIN
    FOR r IN SELECT pool, bool_or(run_at <= now()) AS due, min(run_at) FILTER (WHERE run_at > now()) AS later
               FROM new_rows WHERE status = 'pending' GROUP BY pool LOOP
        IF r.due THEN
            PERFORM pg_notify('tgms_jobs', r.pool);
        END IF;
        IF r.later IS NOT NULL THEN
            PERFORM pg_notify('tgms_jobs', r.pool || '+' || extract(epoch FROM r.later - now())::text);
        END IF;
    END LOOP;
    RETURN NULL;
END $$;
