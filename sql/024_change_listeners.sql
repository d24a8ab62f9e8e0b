-- Live-view notices only while a control center listens. Every NOTIFY takes a global lock at commit
-- and wakes every listening session of the database (the workers' wake-up listeners too), whatever
-- its channel; the per-statement 'tgms_changes' and 'tgms_groups' notices cost that on every join
-- request (its row is written twice) even with no control center open to hear them.
--
-- A control center's listener (tgms_tui/backend/live.py) registers its backend pid here after LISTEN
-- and removes it when it stops; it also clears rows whose session is gone (a control center that
-- was killed), and until then notices are sent as before. With no row, the triggers send nothing.
CREATE TABLE change_listeners (
    pid    integer     PRIMARY KEY,
    since  timestamptz NOT NULL DEFAULT now()
);

CREATE OR REPLACE FUNCTION tgms_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM change_listeners) THEN
        PERFORM pg_notify('tgms_changes', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION tgms_notify_group_ids() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    ids text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM change_listeners) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'DELETE' THEN
        SELECT count(*), string_agg(group_id::text, ',') INTO n, ids FROM (SELECT group_id FROM old_rows LIMIT 401) AS t;
    ELSE
        SELECT count(*), string_agg(group_id::text, ',') INTO n, ids FROM (SELECT group_id FROM new_rows LIMIT 401) AS t;
    END IF;
    IF n > 400 THEN
        PERFORM pg_notify('tgms_groups', '*');
    ELSIF n > 0 THEN
        PERFORM pg_notify('tgms_groups', CASE WHEN TG_OP = 'DELETE' THEN 'd:' ELSE 'u:' END || ids);
    END IF;
    RETURN NULL;
END $$;
