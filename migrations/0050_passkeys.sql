-- Passkey sign-in: discoverable WebAuthn credentials that prove two factors alone.

-- A WebAuthn factor enrolled as a passkey (resident key + user verification required).
ALTER TABLE factors ADD COLUMN passkey boolean NOT NULL DEFAULT false;

-- Registration challenges remember whether a passkey was asked for.
ALTER TABLE webauthn_challenges ADD COLUMN passkey boolean NOT NULL DEFAULT false;

-- false: the password path is off (the account signs in with its passkey; recovery codes
-- and password reset lead back to a passkey or recovery code, never around it).
ALTER TABLE accounts ADD COLUMN password_login boolean NOT NULL DEFAULT true;

-- Sign-in challenges made before the account is known (no allowCredentials). Single-use,
-- short-lived, bound to the challenge id the client got with them.
CREATE TABLE passkey_challenges (
    id          uuid PRIMARY KEY,
    challenge   bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX passkey_challenges_expiry ON passkey_challenges (expires_at);
