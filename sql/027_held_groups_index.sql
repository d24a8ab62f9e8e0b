-- The dashboard's raid banner asks on every refresh tick which groups are on hold
-- (`held_until > now()`): with no index that read every managed group (1,886 pages at 100,000 groups,
-- most of a tick's time). Only groups ever held have a held_until, so this index holds few entries.
CREATE INDEX IF NOT EXISTS managed_groups_held_idx ON managed_groups (held_until) WHERE held_until IS NOT NULL;
