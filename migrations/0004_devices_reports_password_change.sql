-- Devices seen per account (new-device notifications), "this wasn't me" report tokens, and
-- tokens for a forced password change.

CREATE TABLE known_devices (
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    device_key  bytea NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, device_key)
);

CREATE TABLE report_tokens (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CONSTRAINT report_tokens_token_hash_key UNIQUE (token_hash)
);

CREATE TABLE password_change_tokens (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CONSTRAINT password_change_tokens_token_hash_key UNIQUE (token_hash)
);
