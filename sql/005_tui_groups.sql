-- For the control center (tgms tui), two things about managed_groups.
-- 1) The member trend next to each count. Reading the two latest member_count_history rows of 10,000
--    groups on every refresh is too slow, so the previous count is kept on the group row itself, by
--    the database, whoever writes member_count.

ALTER TABLE managed_groups ADD COLUMN IF NOT EXISTS member_count_prev integer;

CREATE OR REPLACE FUNCTION tgms_keep_member_count_prev() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.member_count IS DISTINCT FROM OLD.member_count THEN
        NEW.member_count_prev := OLD.member_count;
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS managed_groups_member_count_prev ON managed_groups;
CREATE TRIGGER managed_groups_member_count_prev BEFORE UPDATE OF member_count ON managed_groups
    FOR EACH ROW EXECUTE FUNCTION tgms_keep_member_count_prev();

-- 2) Which groups changed: one NOTIFY per statement on 'tgms_groups' with the
-- changed ids ("u:<id>,<id>..." for inserts and updates, "d:..." for deletes), or "*" when the list
-- would not fit a NOTIFY payload (< 8000 bytes). The TUI then reads just those rows instead of all
-- 10,000 groups. (Transition tables allow one event per trigger, hence three triggers.)
CREATE OR REPLACE FUNCTION tgms_notify_group_ids() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    n integer;
    ids text;
BEGIN
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

DROP TRIGGER IF EXISTS managed_groups_notify_ids_insert ON managed_groups;
DROP TRIGGER IF EXISTS managed_groups_notify_ids_update ON managed_groups;
DROP TRIGGER IF EXISTS managed_groups_notify_ids_delete ON managed_groups;
CREATE TRIGGER managed_groups_notify_ids_insert AFTER INSERT ON managed_groups
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_group_ids();
CREATE TRIGGER managed_groups_notify_ids_update AFTER UPDATE ON managed_groups
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_group_ids();
CREATE TRIGGER managed_groups_notify_ids_delete AFTER DELETE ON managed_groups
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tgms_notify_group_ids();
