-- The control center shows each group's member trend next to its count. Reading the two latest
-- member_count_history rows for 10,000 groups on every refresh is too slow, so the previous value is
-- kept on the group row itself, by the database, whoever writes member_count.

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
