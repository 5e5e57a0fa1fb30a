-- Step-up challenges and tokens, bound to a session, an action and a canonical transaction.

CREATE TABLE step_up_challenges (
    id                 uuid PRIMARY KEY,
    account_id         uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    session_id         uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    action             text NOT NULL,
    transaction        jsonb,
    transaction_hash   text NOT NULL,
    methods            text[] NOT NULL,
    webauthn_challenge bytea,
    failed_attempts    integer NOT NULL DEFAULT 0,
    created_at         timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    verified_at        timestamptz,
    dead_at            timestamptz
);
CREATE INDEX step_up_challenges_session ON step_up_challenges (session_id);

CREATE TABLE step_up_tokens (
    id                uuid PRIMARY KEY,
    token_hash        bytea NOT NULL,
    challenge_id      uuid NOT NULL REFERENCES step_up_challenges (id) ON DELETE CASCADE,
    account_id        uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    session_id        uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    action            text NOT NULL,
    transaction       jsonb,
    transaction_hash  text NOT NULL,
    acr               text NOT NULL,
    amr               text[] NOT NULL,
    verified_at       timestamptz NOT NULL DEFAULT now(),
    expires_at        timestamptz NOT NULL,
    redeemed_at       timestamptz,
    redeemed_by       text,
    CONSTRAINT step_up_tokens_token_hash_key UNIQUE (token_hash)
);
