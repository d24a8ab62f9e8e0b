-- Idempotency keys of the admin API. A client that retries a request after a timeout sends the same
-- `Idempotency-Key` header: the first request's row is inserted in the transaction that does its work
-- (a broadcast and its job), so a retry, even one running at the same moment, finds the row (or waits
-- for it on the primary key) and gets the stored answer instead of doing the work again. The request's
-- hash tells a retry from a different request reusing a key. Rows are kept at least 24 hours; the
-- maintenance job prunes older ones by `created_at`.
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,  -- the endpoint, e.g. 'POST /api/tgms/send'
    key          text        NOT NULL,  -- the client's Idempotency-Key header
    request_hash text        NOT NULL,  -- SHA-256 of the request body, hex
    status_code  integer,               -- the answer given (set in the same transaction)
    response     text,                  -- its JSON body as sent, so a replay is byte for byte the same
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
