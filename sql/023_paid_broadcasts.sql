-- Paid broadcasts: the sender passes allow_paid_broadcast=true on every copy, so the bot may send up
-- to 1000 messages/s instead of ~30 for a fee in Telegram Stars (taken from the bot's balance).
-- Opt-in per broadcast; every broadcast stored before this migration was a free one.
ALTER TABLE broadcasts ADD COLUMN paid boolean NOT NULL DEFAULT false;
