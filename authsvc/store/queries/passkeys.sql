-- Passkey sign-in: challenges made before the account is known, and the credential lookup.

-- name: insert_passkey_challenge
INSERT INTO passkey_challenges (id, challenge, expires_at)
VALUES (%(id)s, %(challenge)s, now() + make_interval(secs => %(ttl)s));

-- name: consume_passkey_challenge
UPDATE passkey_challenges SET used_at = now()
 WHERE id = %(id)s AND used_at IS NULL AND expires_at > now()
RETURNING challenge;

-- name: delete_stale_passkey_challenges
DELETE FROM passkey_challenges WHERE expires_at < now() - interval '1 hour';

-- name: passkey_by_credential
SELECT f.id, f.account_id, f.public_key, f.sign_count, f.backup_eligible, f.backed_up, a.webauthn_user_id
  FROM factors f JOIN accounts a ON a.id = f.account_id
 WHERE f.credential_id = %(credential_id)s AND f.type = 'webauthn' AND f.status = 'active' AND f.passkey;

-- name: active_passkey_count
SELECT count(*) FROM factors
 WHERE account_id = %(account_id)s AND type = 'webauthn' AND status = 'active' AND passkey;

-- name: password_login_of
SELECT password_login FROM accounts WHERE id = %(account_id)s;

-- name: set_password_login
UPDATE accounts SET password_login = %(enabled)s WHERE id = %(account_id)s
RETURNING password_login;
