-- Known devices are server-issued device tokens (stored hashed), replacing the per-account
-- "seen device" keys derived from X-Device-Id / User-Agent, which a client could choose.
DROP TABLE known_devices;

CREATE TABLE device_tokens (
    id              uuid PRIMARY KEY,
    account_id      uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash      bytea NOT NULL,
    device_name     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    revoked_at      timestamptz,
    revoked_reason  text,
    CONSTRAINT device_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX device_tokens_live_of_account ON device_tokens (account_id) WHERE revoked_at IS NULL;

-- The device a session was opened from ("sign out everywhere" keeps the current device known).
ALTER TABLE sessions ADD COLUMN device_token_id uuid REFERENCES device_tokens (id) ON DELETE SET NULL;

-- Reset SMS quotas: requests from a known device of the account have a quota of their own.
ALTER TABLE password_resets ADD COLUMN from_known_device boolean NOT NULL DEFAULT false;

-- Wrong second-factor answers from known devices do not lock the account for unknown devices.
ALTER TABLE factor_failures ADD COLUMN from_known_device boolean NOT NULL DEFAULT false;
