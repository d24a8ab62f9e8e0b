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
