-- Photos uploaded from disk, A/B variants of a broadcast, and click tracking of its links.

-- A photo from disk, stored once by content (the same image sent twice is one row). Its bytes live
-- here, not on a worker's disk, so whichever worker (on whichever host) sends or resumes the broadcast
-- can upload it. A broadcast refers to it as photo_url 'tgms-photo:<sha256>'.
-- file_id: Telegram's id for it once the group-management bot uploaded it (every later copy reuses
-- it); upload_by/upload_until/upload_worker: the one sender uploading it right now (a lease: if its
-- worker stops heartbeating, or the lease runs out, the next sender uploads).
CREATE TABLE broadcast_photos (
    sha256         text        PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    content        bytea       NOT NULL,
    media_type     text        NOT NULL CHECK (media_type IN ('image/jpeg', 'image/png', 'image/webp')),
    filename       text        NOT NULL,
    width          integer     NOT NULL,
    height         integer     NOT NULL,
    file_id        text,
    file_unique_id text,
    uploaded_at    timestamptz,
    uploads        integer     NOT NULL DEFAULT 0,
    upload_by      text,
    upload_until   timestamptz,
    upload_worker  text,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- One row per broadcast that has variants or tracked links (a plain broadcast has none).
-- holdout: the share of the target's groups held back when it starts, for the winner later;
-- winner_of: on a broadcast that sends a winner, the A/B broadcast it comes from.
CREATE TABLE broadcast_ab (
    broadcast_id    bigint      PRIMARY KEY REFERENCES broadcasts (broadcast_id) ON DELETE CASCADE,
    track_clicks    boolean     NOT NULL DEFAULT false,
    public_base_url text,
    holdout         real        NOT NULL DEFAULT 0 CHECK (holdout >= 0 AND holdout <= 0.9),
    winner_of       bigint      REFERENCES broadcasts (broadcast_id) ON DELETE SET NULL,
    winner_variant  smallint,
    created_at      timestamptz NOT NULL DEFAULT now()
);
-- At most one winner broadcast per A/B broadcast.
CREATE UNIQUE INDEX broadcast_ab_winner_of_idx ON broadcast_ab (winner_of) WHERE winner_of IS NOT NULL;

-- The variants (2-4) of an A/B broadcast: the text (or caption) and its URL buttons.
CREATE TABLE broadcast_variants (
    broadcast_id bigint   NOT NULL REFERENCES broadcasts (broadcast_id) ON DELETE CASCADE,
    variant      smallint NOT NULL CHECK (variant BETWEEN 1 AND 4),
    body         text     NOT NULL,
    buttons      jsonb,
    PRIMARY KEY (broadcast_id, variant)
);

-- The variant each group got (NULL: a broadcast without variants).
ALTER TABLE sent_messages ADD COLUMN variant smallint;

-- Groups of the target held back when the A/B broadcast started (they may get the winner later).
CREATE TABLE broadcast_holdout (
    broadcast_id bigint NOT NULL REFERENCES broadcasts (broadcast_id) ON DELETE CASCADE,
    chat_id      bigint NOT NULL,
    PRIMARY KEY (broadcast_id, chat_id)
);

-- A tracked link: one per copy and URL, so a click names its group and variant. The token is 128
-- random bits (hex); /r/<token> redirects to `url` and nothing else.
CREATE TABLE tracked_links (
    token        text        PRIMARY KEY CHECK (token ~ '^[0-9a-f]{32}$'),
    broadcast_id bigint      NOT NULL REFERENCES broadcasts (broadcast_id) ON DELETE CASCADE,
    message_id   bigint      NOT NULL REFERENCES sent_messages (message_id) ON DELETE CASCADE,
    variant      smallint,
    url          text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (message_id, url)
);

-- One row per counted click: which link (so which broadcast, variant and group) and when. Nothing
-- about the person: no address, no user agent, no cookie.
CREATE TABLE clicks (
    click_id     bigserial   PRIMARY KEY,
    token        text        NOT NULL REFERENCES tracked_links (token) ON DELETE CASCADE,
    broadcast_id bigint      NOT NULL,
    variant      smallint,
    chat_id      bigint      NOT NULL,
    clicked_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX clicks_broadcast_idx ON clicks (broadcast_id, variant);
CREATE INDEX clicks_token_time_idx ON clicks (token, clicked_at);
