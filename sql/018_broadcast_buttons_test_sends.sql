-- Inline URL buttons under a broadcast's copies, and test sends of a broadcast before it goes out.
-- Buttons live in their own table (one row per broadcast that has any): the sender and a follow-up
-- edit read them to send the same reply_markup with every copy.
CREATE TABLE broadcast_buttons (
    broadcast_id bigint PRIMARY KEY REFERENCES broadcasts (broadcast_id) ON DELETE CASCADE,
    -- [[{"text": ..., "url": ...}, ...], ...]: rows of buttons, as Telegram's inline_keyboard
    rows         jsonb  NOT NULL
);

-- A test send: the message exactly as a group would get it (debug code included) sent to one test
-- chat by a tgms_broadcast_test_send job. It creates no broadcast and no sent_messages row.
CREATE TABLE broadcast_test_sends (
    test_send_id        bigserial PRIMARY KEY,
    chat_id             bigint      NOT NULL,
    content             jsonb       NOT NULL,
    debug_code          text        NOT NULL,
    status              text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    telegram_message_id bigint,
    error               text,
    requested_by        text        NOT NULL,
    job_id              bigint,
    created_at          timestamptz NOT NULL DEFAULT now(),
    finished_at         timestamptz
);

-- A copy delivered to a basic group stays in that group when it moves to a supergroup: Telegram
-- answers every later call for the old id with the migration, and the supergroup's message ids are
-- its own (the same number there is another message). The group's id is rewritten everywhere, this
-- row's too, so the chat the copy really is in is kept here for follow-ups, which skip such a copy
-- instead of editing or deleting whatever has its message id in the supergroup.
ALTER TABLE sent_messages ADD COLUMN delivered_in_chat_id bigint;

CREATE FUNCTION sent_messages_keep_delivered_chat() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.delivered_in_chat_id := COALESCE(OLD.delivered_in_chat_id, OLD.chat_id);
    RETURN NEW;
END
$$;

CREATE TRIGGER sent_messages_keep_delivered_chat
    BEFORE UPDATE OF chat_id ON sent_messages
    FOR EACH ROW
    WHEN (OLD.chat_id IS DISTINCT FROM NEW.chat_id AND OLD.status IN ('sent', 'ambiguous'))
    EXECUTE FUNCTION sent_messages_keep_delivered_chat();
