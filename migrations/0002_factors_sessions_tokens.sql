-- Second factors, login (mfa tokens), sessions, refresh tokens, signing keys, API clients.

CREATE TABLE factors (
    id                  uuid PRIMARY KEY,
    account_id          uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    type                text NOT NULL CHECK (type IN ('totp', 'webauthn')),
    name                text NOT NULL,
    status              text NOT NULL CHECK (status IN ('pending', 'active')),
    -- TOTP: the secret encrypted (AES-GCM, key id inside), and the last accepted time step
    totp_secret_enc     text,
    totp_last_step      bigint,
    confirm_attempts    integer NOT NULL DEFAULT 0,
    pending_expires_at  timestamptz,
    -- WebAuthn
    credential_id       bytea,
    public_key          bytea,
    sign_count          bigint NOT NULL DEFAULT 0,
    aaguid              text,
    transports          text[] NOT NULL DEFAULT '{}',
    backed_up           boolean,
    counter_regressions integer NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now(),
    confirmed_at        timestamptz,
    last_used_at        timestamptz,
    CONSTRAINT factors_credential_id_key UNIQUE (credential_id),
    CONSTRAINT factors_totp_has_secret CHECK (type <> 'totp' OR totp_secret_enc IS NOT NULL),
    CONSTRAINT factors_webauthn_has_key CHECK (type <> 'webauthn' OR (credential_id IS NOT NULL AND public_key IS NOT NULL))
);
CREATE INDEX factors_account ON factors (account_id);

CREATE TABLE recovery_codes (
    id          bigserial PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash   bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    used_at     timestamptz
);
CREATE INDEX recovery_codes_account ON recovery_codes (account_id, code_hash) WHERE used_at IS NULL;

-- WebAuthn registration challenges (login challenges live on the mfa token).
CREATE TABLE webauthn_challenges (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    purpose     text NOT NULL,
    challenge   bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX webauthn_challenges_lookup ON webauthn_challenges (account_id, purpose, challenge);

-- The result of the password step: good for one second-factor answer, 5 wrong ones kill it.
CREATE TABLE mfa_tokens (
    id                 uuid PRIMARY KEY,
    token_hash         bytea NOT NULL,
    account_id         uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    methods            text[] NOT NULL,
    webauthn_challenge bytea,
    sms_code_mac       bytea,
    failed_attempts    integer NOT NULL DEFAULT 0,
    ip                 text,
    user_agent         text,
    device_id          text,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    used_at            timestamptz,
    dead_at            timestamptz,
    CONSTRAINT mfa_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX mfa_tokens_account ON mfa_tokens (account_id);

-- Wrong second-factor answers, counted per account across tokens, sessions and IPs.
CREATE TABLE factor_failures (
    id          bigserial PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX factor_failures_account_at ON factor_failures (account_id, at);

ALTER TABLE accounts
    ADD COLUMN locked_until timestamptz,
    ADD COLUMN lock_count   integer NOT NULL DEFAULT 0;

CREATE TABLE sessions (
    id              uuid PRIMARY KEY,
    account_id      uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    acr             text NOT NULL,
    amr             text[] NOT NULL,
    auth_time       timestamptz NOT NULL,
    ip              text,
    user_agent      text,
    device_id       text,
    device_name     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    revoked_reason  text
);
CREATE INDEX sessions_account ON sessions (account_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    id          uuid PRIMARY KEY,
    session_id  uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX refresh_tokens_session ON refresh_tokens (session_id);

-- ES256 signing keys: private halves encrypted. A key signs from activate_at; after a
-- rotation the old key stays published until publish_until (its last tokens expired).
CREATE TABLE signing_keys (
    kid              text PRIMARY KEY,
    private_key_enc  text NOT NULL,
    public_jwk       jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    activate_at      timestamptz NOT NULL,
    publish_until    timestamptz
);

-- Payment backends (introspection, step-up redemption): secrets shown once, stored hashed.
CREATE TABLE clients (
    id           text PRIMARY KEY,
    name         text NOT NULL,
    secret_hash  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
