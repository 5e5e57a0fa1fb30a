-- Second factors, recovery codes, WebAuthn registration challenges, enrollment tokens.

-- name: account_by_id
SELECT * FROM accounts WHERE id = %(account_id)s;

-- name: enrollment_token_lookup
SELECT t.id, t.account_id FROM enrollment_tokens t
 WHERE t.token_hash = %(token_hash)s AND t.used_at IS NULL AND t.expires_at > now();

-- name: enrollment_token_consume
UPDATE enrollment_tokens SET used_at = now()
 WHERE id = %(id)s AND used_at IS NULL AND expires_at > now()
RETURNING id;

-- name: enrollment_tokens_consume_all
UPDATE enrollment_tokens SET used_at = now()
 WHERE account_id = %(account_id)s AND used_at IS NULL;

-- name: active_factor_count
SELECT count(*) AS n FROM factors WHERE account_id = %(account_id)s AND status = 'active';

-- name: lock_account
SELECT * FROM accounts WHERE id = %(account_id)s FOR UPDATE;

-- name: factors_of_account
SELECT id, type, name, status, passkey, payment, created_at, confirmed_at, last_used_at
  FROM factors WHERE account_id = %(account_id)s AND status = 'active'
 ORDER BY created_at;

-- name: active_totp_factors
SELECT id, totp_secret_enc, totp_last_step FROM factors
 WHERE account_id = %(account_id)s AND type = 'totp' AND status = 'active';

-- name: active_webauthn_credential_ids
SELECT credential_id FROM factors
 WHERE account_id = %(account_id)s AND type = 'webauthn' AND status = 'active';

-- name: factor_offer
SELECT ARRAY(SELECT credential_id FROM factors
              WHERE account_id = %(account_id)s AND type = 'webauthn' AND status = 'active'
              ORDER BY created_at) AS webauthn_credential_ids,
       EXISTS (SELECT 1 FROM factors
                WHERE account_id = %(account_id)s AND type = 'totp' AND status = 'active') AS has_totp,
       EXISTS (SELECT 1 FROM recovery_codes
                WHERE account_id = %(account_id)s AND used_at IS NULL) AS has_recovery_codes;

-- name: webauthn_factor_by_credential
SELECT f.id, f.public_key, f.sign_count, f.backup_eligible, f.backed_up, a.webauthn_user_id FROM factors f
  JOIN accounts a ON a.id = f.account_id
 WHERE f.account_id = %(account_id)s AND f.credential_id = %(credential_id)s
   AND f.type = 'webauthn' AND f.status = 'active';

-- name: insert_totp_factor
INSERT INTO factors (id, account_id, type, name, status, totp_secret_enc, pending_expires_at)
VALUES (%(id)s, %(account_id)s, 'totp', %(name)s, 'pending', %(secret_enc)s,
        now() + make_interval(secs => %(ttl)s));

-- name: lock_pending_totp
SELECT id, totp_secret_enc FROM factors
 WHERE id = %(id)s AND account_id = %(account_id)s AND type = 'totp' AND status = 'pending'
   AND pending_expires_at > now() AND confirm_attempts < %(max_attempts)s
 FOR UPDATE;

-- name: pending_totp_failed
-- A pending factor has no dead_at: lock_pending_totp skips it once the attempts are used up.
UPDATE factors SET confirm_attempts = confirm_attempts + 1
 WHERE id = %(id)s AND status = 'pending' AND confirm_attempts < %(max_attempts)s
RETURNING confirm_attempts >= %(max_attempts)s AS dead;

-- name: activate_totp
UPDATE factors SET status = 'active', totp_last_step = %(step)s, confirmed_at = now(),
                   pending_expires_at = NULL
 WHERE id = %(id)s AND status = 'pending'
RETURNING id;

-- name: totp_accept_step
UPDATE factors SET totp_last_step = %(step)s, last_used_at = now()
 WHERE id = %(id)s AND status = 'active' AND (totp_last_step IS NULL OR totp_last_step < %(step)s)
RETURNING id;

-- name: insert_webauthn_factor
INSERT INTO factors (id, account_id, type, name, status, credential_id, public_key, sign_count,
                     aaguid, transports, backup_eligible, backed_up, passkey, payment, confirmed_at)
VALUES (%(id)s, %(account_id)s, 'webauthn', %(name)s, 'active', %(credential_id)s, %(public_key)s,
        %(sign_count)s, %(aaguid)s, %(transports)s, %(backup_eligible)s, %(backed_up)s, %(passkey)s, %(payment)s, now());

-- name: webauthn_accept_count
-- Also remembers what the assertion's flags said: once backup-eligible or backed up, a
-- credential stays synced (its key has been able to leave the device).
UPDATE factors SET sign_count = %(new_count)s, last_used_at = now(),
       backup_eligible = coalesce(backup_eligible, false) OR %(backup_eligible)s,
       backed_up = coalesce(backed_up, false) OR %(backed_up)s
 WHERE id = %(id)s AND sign_count = %(old_count)s
RETURNING id;

-- name: webauthn_counter_regression
UPDATE factors SET counter_regressions = counter_regressions + 1 WHERE id = %(id)s;

-- name: insert_webauthn_challenge
INSERT INTO webauthn_challenges (id, account_id, purpose, challenge, passkey, payment, expires_at)
VALUES (%(id)s, %(account_id)s, %(purpose)s, %(challenge)s, %(passkey)s, %(payment)s,
        now() + make_interval(secs => %(ttl)s));

-- name: consume_webauthn_challenge
UPDATE webauthn_challenges SET used_at = now()
 WHERE account_id = %(account_id)s AND purpose = %(purpose)s AND challenge = %(challenge)s
   AND used_at IS NULL AND expires_at > now()
RETURNING id, passkey, payment;

-- name: delete_factor
DELETE FROM factors WHERE id = %(id)s AND account_id = %(account_id)s RETURNING type, status;

-- name: delete_recovery_codes
DELETE FROM recovery_codes WHERE account_id = %(account_id)s;

-- name: insert_recovery_code
INSERT INTO recovery_codes (account_id, code_hash) VALUES (%(account_id)s, %(code_hash)s);

-- name: unused_recovery_code_count
SELECT count(*) AS n FROM recovery_codes WHERE account_id = %(account_id)s AND used_at IS NULL;

-- name: burn_recovery_code
UPDATE recovery_codes SET used_at = now()
 WHERE id = (SELECT id FROM recovery_codes
              WHERE account_id = %(account_id)s AND code_hash = %(code_hash)s AND used_at IS NULL
              LIMIT 1)
   AND used_at IS NULL
RETURNING id;

-- name: record_factor_failure
INSERT INTO factor_failures (account_id, from_known_device, device_token_id, session_id)
VALUES (%(account_id)s, %(from_known_device)s, %(device_token_id)s, %(session_id)s);

-- name: recent_factor_failures
SELECT count(*) AS n FROM factor_failures
 WHERE account_id = %(account_id)s AND at > now() - make_interval(secs => %(window)s)
   AND NOT from_known_device;

-- name: device_failure_wait
-- Seconds until fewer than `limit` wrong login answers from this known device token are left
-- in the window (no row: fewer already). The row is the limit-th most recent one
-- (offset = limit - 1). Step-up answers (session_id set) count for their session only.
SELECT GREATEST(1, ceil(extract(epoch FROM at + make_interval(secs => %(window)s) - now())))::int AS seconds
  FROM factor_failures
 WHERE device_token_id = %(device_token_id)s AND session_id IS NULL
   AND at > now() - make_interval(secs => %(window)s)
 ORDER BY at DESC
OFFSET %(offset)s LIMIT 1;

-- name: session_failure_wait
-- The same for the wrong step-up answers of one session.
SELECT GREATEST(1, ceil(extract(epoch FROM at + make_interval(secs => %(window)s) - now())))::int AS seconds
  FROM factor_failures
 WHERE session_id = %(session_id)s AND at > now() - make_interval(secs => %(window)s)
 ORDER BY at DESC
OFFSET %(offset)s LIMIT 1;

-- name: device_failures_in_window
SELECT count(*) AS n FROM factor_failures
 WHERE device_token_id = %(device_token_id)s AND session_id IS NULL
   AND at > now() - make_interval(secs => %(window)s);

-- name: session_failures_in_window
SELECT count(*) AS n FROM factor_failures
 WHERE session_id = %(session_id)s AND at > now() - make_interval(secs => %(window)s);

-- name: clear_lock_escalation
UPDATE accounts SET lock_count = 0 WHERE id = %(account_id)s AND lock_count <> 0;

-- name: lock_account_until
UPDATE accounts
   SET locked_until = now() + make_interval(secs => %(seconds)s), lock_count = lock_count + 1
 WHERE id = %(account_id)s
RETURNING locked_until, lock_count;

-- name: account_lock_remaining
SELECT GREATEST(0, ceil(extract(epoch FROM locked_until - now())))::int AS seconds
  FROM accounts WHERE id = %(account_id)s AND locked_until > now();

-- name: lift_account_lock
UPDATE accounts a SET locked_until = NULL, lock_count = 0
  FROM (SELECT id, locked_until > now() AS was_locked FROM accounts WHERE id = %(account_id)s) old
 WHERE a.id = old.id
RETURNING coalesce(old.was_locked, false) AS was_locked;

-- name: locked_accounts
SELECT id, email, locked_until, lock_count,
       GREATEST(0, ceil(extract(epoch FROM locked_until - now())))::int AS seconds_left
  FROM accounts WHERE locked_until > now() ORDER BY locked_until DESC LIMIT %(limit)s;

-- name: payment_credential_ids
-- Secure Payment Confirmation: the account's active credentials enrolled with the payment extension.
SELECT credential_id FROM factors
 WHERE account_id = %(account_id)s AND type = 'webauthn' AND status = 'active' AND payment
 ORDER BY created_at;

-- name: payment_factor_by_credential
SELECT f.id, f.public_key, f.sign_count, f.backup_eligible, f.backed_up, a.webauthn_user_id FROM factors f
  JOIN accounts a ON a.id = f.account_id
 WHERE f.account_id = %(account_id)s AND f.credential_id = %(credential_id)s
   AND f.type = 'webauthn' AND f.status = 'active' AND f.payment;
