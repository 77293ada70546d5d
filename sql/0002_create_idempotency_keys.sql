-- 0002: stored answers of writes sent with an Idempotency-Key.
-- Idempotent: safe to run again, and safe as a /docker-entrypoint-initdb.d script.
--
-- A row is written in the same transaction as the write it answers, so it exists exactly
-- when the write committed. `owner` is who sent the key (keys of different callers never
-- collide); `fingerprint` is SHA-256 of the method, the target and the body, so the same
-- key with another request is told apart.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    owner       text        NOT NULL,
    key         text        NOT NULL CHECK (octet_length(key) BETWEEN 1 AND 255),
    fingerprint bytea       NOT NULL,
    status      smallint    NOT NULL,
    location    text,
    etag        text,
    body        bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);

-- The purge finds expired rows by this index, a batch at a time.
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at);
