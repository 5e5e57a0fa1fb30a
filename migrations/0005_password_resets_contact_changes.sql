-- Password resets (SMS code to the verified phone AND a second factor) and contact changes.

CREATE TABLE password_resets (
    id                 uuid PRIMARY KEY,
    account_id         uuid REFERENCES accounts (id) ON DELETE CASCADE,  -- NULL: a decoy for an unknown email
    phone              text,
    sms_code_mac       bytea NOT NULL,
    sms_verified_at    timestamptz,
    methods            text[] NOT NULL DEFAULT '{}',
    webauthn_challenge bytea,
    reset_token_hash   bytea,
    failed_attempts    integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    completed_at       timestamptz,
    dead_at            timestamptz,
    CONSTRAINT password_resets_reset_token_hash_key UNIQUE (reset_token_hash)
);
CREATE INDEX password_resets_account_created ON password_resets (account_id, created_at);
CREATE INDEX password_resets_phone_created ON password_resets (phone, created_at);

CREATE TABLE contact_changes (
    id               uuid PRIMARY KEY,
    account_id       uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    kind             text NOT NULL CHECK (kind IN ('phone', 'email')),
    new_value        text NOT NULL,
    new_normalized   text NOT NULL,
    code_mac         bytea NOT NULL,
    value_taken      boolean NOT NULL DEFAULT false,
    failed_attempts  integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    completed_at     timestamptz,
    dead_at          timestamptz
);
CREATE INDEX contact_changes_account ON contact_changes (account_id);
