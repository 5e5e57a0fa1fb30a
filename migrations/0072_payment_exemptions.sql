-- Payment exemptions from step-up (issue 22): low value per currency (cumulative amount and
-- count since the last full step-up), trusted payees, recurring series started with a full
-- step-up. Off unless configured (services/exemptions.py).

-- Low-value counters: one row per account and currency, changed only by a conditional
-- UPDATE ... RETURNING, so racing payments never both fit under a cap that only one fits under.
-- A full step-up of the account puts every currency back at zero.
CREATE TABLE payment_exemption_counters (
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    currency     text NOT NULL,
    cumulative   numeric NOT NULL DEFAULT 0 CHECK (cumulative >= 0),
    count        integer NOT NULL DEFAULT 0 CHECK (count >= 0),
    since        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, currency)
);

-- The user's trusted payees (each addition under step-up payee.trust).
CREATE TABLE trusted_payees (
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    payee        text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (account_id, payee)
);

-- Recurring series: the same amount and currency to the same payee, started by a full
-- step-up of a payment.authorize asked with "recurring": true. At most one exempt payment per
-- series per interval (last_exempt_at moves with a conditional UPDATE).
CREATE TABLE recurring_series (
    id               uuid PRIMARY KEY,
    account_id       uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    transaction_hash text NOT NULL,
    transaction      jsonb NOT NULL,
    started_at       timestamptz NOT NULL DEFAULT now(),
    last_exempt_at   timestamptz,
    CONSTRAINT recurring_series_account_tx_key UNIQUE (account_id, transaction_hash)
);

ALTER TABLE step_up_challenges ADD COLUMN recurring boolean NOT NULL DEFAULT false;

-- An exempted step-up token has no challenge; it names its exemption.
ALTER TABLE step_up_tokens ALTER COLUMN challenge_id DROP NOT NULL;
ALTER TABLE step_up_tokens ADD COLUMN exemption text
    CHECK (exemption IN ('low_value', 'trusted_payee', 'recurring'));
ALTER TABLE step_up_tokens ADD CONSTRAINT step_up_tokens_challenge_or_exemption
    CHECK ((challenge_id IS NULL) <> (exemption IS NULL));
