-- An mfa_token is bound to the password hash it was issued for (a SHA-256 fingerprint of the
-- stored hash, not of the password): a password change or reset ends every mfa_token issued
-- before it, also one issued by a login that raced the change. Tokens issued before this
-- migration have none and are refused (they live 5 minutes).
ALTER TABLE mfa_tokens ADD COLUMN password_fp bytea;
