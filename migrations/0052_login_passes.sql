-- Sign-in passes (issue 16): when others spent an email's failure budget, the notice to its
-- owner carries a pass that lets the owner's next sign-in from a new device skip that
-- email's budget (never the client's or network's, never the second factor). Stored hashed,
-- bound to the account, good for 5 wrong passwords and one sign-in.
CREATE TABLE login_passes (
    id          uuid PRIMARY KEY,
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    token_hash  bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    attempts    integer NOT NULL DEFAULT 0,
    used_at     timestamptz,
    CONSTRAINT login_passes_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX login_passes_account ON login_passes (account_id);
