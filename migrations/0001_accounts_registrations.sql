-- Accounts, pending registrations, enrollment tokens and the transactional outbox.

CREATE TABLE accounts (
    id                       uuid PRIMARY KEY,
    email                    text NOT NULL,
    email_normalized         text NOT NULL,
    phone                    text NOT NULL,
    password_hash            text NOT NULL,
    status                   text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen')),
    password_change_required boolean NOT NULL DEFAULT false,
    webauthn_user_id         bytea NOT NULL,
    email_verified_at        timestamptz NOT NULL,
    phone_verified_at        timestamptz NOT NULL,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_email_normalized_key UNIQUE (email_normalized),
    CONSTRAINT accounts_webauthn_user_id_key UNIQUE (webauthn_user_id)
);

-- A registration holds no claim on the email: only accounts do. It expires, and dies after
-- 5 wrong answers. Codes are stored as keyed MACs, never in clear.
CREATE TABLE registrations (
    id               uuid PRIMARY KEY,
    email            text NOT NULL,
    email_normalized text NOT NULL,
    phone            text NOT NULL,
    password_hash    text NOT NULL,
    phone_code_mac   bytea NOT NULL,
    email_code_mac   bytea NOT NULL,
    email_taken      boolean NOT NULL,
    failed_attempts  integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    consumed_at      timestamptz,
    dead_at          timestamptz
);
CREATE INDEX registrations_phone_created ON registrations (phone, created_at);
CREATE INDEX registrations_expires ON registrations (expires_at);

CREATE TABLE enrollment_tokens (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CONSTRAINT enrollment_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX enrollment_tokens_account ON enrollment_tokens (account_id);

-- Transactional outbox: SMS, email and webhooks are written in the same transaction as the
-- change that causes them and delivered (at least once) afterwards. Payloads are encrypted
-- (they can carry codes) and blanked once delivered.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('sms', 'email', 'webhook')),
    payload       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    available_at  timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    delivered_at  timestamptz,
    failed_at     timestamptz
);
CREATE INDEX outbox_pending ON outbox (available_at) WHERE delivered_at IS NULL AND failed_at IS NULL;

-- Append-only audit log of security-relevant changes (operators' reasons included).
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text NOT NULL,
    action      text NOT NULL,
    account_id  uuid,
    detail      jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_account ON audit_log (account_id, at);
