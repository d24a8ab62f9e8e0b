-- Broadcasts as objects operators act on after submitting them: who cancelled one, when a scheduled
-- one was last edited, and per-status counts read from an index (the Broadcasts list, `tgms broadcast
-- list` and GET /api/tgms/broadcasts count every listed broadcast's deliveries on each refresh).
ALTER TABLE broadcasts ADD COLUMN IF NOT EXISTS cancelled_by text;
ALTER TABLE broadcasts ADD COLUMN IF NOT EXISTS edited_at timestamptz;
CREATE INDEX IF NOT EXISTS sent_messages_broadcast_status_idx ON sent_messages (broadcast_id, status);
