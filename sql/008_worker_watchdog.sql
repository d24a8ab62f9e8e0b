-- The workers' event-loop watchdog. A handler that blocks a worker's event loop (a synchronous call
-- where an await was meant) stops its heartbeat; a thread of the worker notices and records the stall
-- in the worker's bot_health row: status 'stalled', last_error naming the job and the code that
-- blocks, when the stall began and how long it has lasted (kept after the loop recovers, as the
-- worker's last stall). The watchdog does not touch updated_at: a stalled worker's heartbeat ages,
-- so other workers take over its jobs when its leases run out.
ALTER TABLE bot_health
    ADD COLUMN IF NOT EXISTS loop_stalled_at    timestamptz,
    ADD COLUMN IF NOT EXISTS loop_stall_seconds double precision;
