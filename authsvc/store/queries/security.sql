-- Known devices, "this wasn't me" reports, forced password changes.

-- name: insert_report_token
INSERT INTO report_tokens (id, account_id, token_hash, reason, detail, expires_at)
VALUES (%(id)s, %(account_id)s, %(token_hash)s, %(reason)s, %(detail)s::jsonb,
        now() + make_interval(secs => %(ttl)s));

-- name: live_report_token
-- What a live report link is about (the report page; nothing changes).
SELECT r.reason, r.detail, r.created_at, a.locale, a.status
  FROM report_tokens r JOIN accounts a ON a.id = r.account_id
 WHERE r.token_hash = %(token_hash)s AND r.used_at IS NULL AND r.expires_at > now();

-- name: consume_report_token
UPDATE report_tokens SET used_at = now()
 WHERE token_hash = %(token_hash)s AND used_at IS NULL AND expires_at > now()
RETURNING account_id, reason;

-- name: freeze_account
UPDATE accounts SET status = 'frozen', updated_at = now() WHERE id = %(account_id)s
RETURNING email, phone, locale;

-- name: revoke_all_sessions
UPDATE sessions SET revoked_at = now(), revoked_reason = %(reason)s
 WHERE account_id = %(account_id)s AND revoked_at IS NULL
RETURNING id;

-- name: insert_password_change_token
INSERT INTO password_change_tokens (id, account_id, token_hash, expires_at)
VALUES (%(id)s, %(account_id)s, %(token_hash)s, now() + make_interval(secs => %(ttl)s));

-- name: lock_password_change_token
SELECT t.id, t.account_id FROM password_change_tokens t
 WHERE t.token_hash = %(token_hash)s AND t.used_at IS NULL AND t.expires_at > now()
 FOR UPDATE;

-- name: consume_password_change_token
UPDATE password_change_tokens SET used_at = now()
 WHERE id = %(id)s AND used_at IS NULL AND expires_at > now()
RETURNING account_id;

-- name: set_password
UPDATE accounts SET password_hash = %(password_hash)s, password_change_required = false, updated_at = now()
 WHERE id = %(account_id)s;

-- name: account_for_operator
SELECT a.*, (SELECT count(*) FROM sessions s WHERE s.account_id = a.id AND s.revoked_at IS NULL) AS live_sessions
  FROM accounts a
 WHERE a.id::text = %(ref)s OR a.email_normalized = %(email_normalized)s;

-- name: unfreeze_account
UPDATE accounts SET status = 'active', updated_at = now() WHERE id = %(account_id)s AND status = 'frozen'
RETURNING id;

-- name: require_password_reset
UPDATE accounts SET reset_required = true, password_change_required = false, updated_at = now()
 WHERE id = %(account_id)s;

-- name: clear_reset_required
UPDATE accounts SET reset_required = false, updated_at = now() WHERE id = %(account_id)s AND reset_required;

-- name: require_password_change
UPDATE accounts SET password_change_required = true, updated_at = now() WHERE id = %(account_id)s;

-- name: delete_factors_of_account
DELETE FROM factors WHERE account_id = %(account_id)s RETURNING id;

-- name: open_incident
SELECT * FROM incidents WHERE kind = %(kind)s AND finished_at IS NULL ORDER BY started_at LIMIT 1
FOR UPDATE;

-- name: insert_incident
INSERT INTO incidents (id, kind, reason, operator) VALUES (%(id)s, %(kind)s, %(reason)s, %(operator)s)
RETURNING *;

-- name: lock_incident
SELECT * FROM incidents WHERE id = %(id)s FOR UPDATE;

-- name: require_password_change_batch
UPDATE accounts SET password_change_required = true, updated_at = now()
 WHERE id IN (SELECT id FROM accounts
               WHERE (%(cursor)s::uuid IS NULL OR id > %(cursor)s::uuid) AND created_at <= %(started_at)s
               ORDER BY id LIMIT %(limit)s)
RETURNING id, email, locale;

-- name: advance_incident
UPDATE incidents SET cursor = %(cursor)s, done_count = done_count + %(n)s WHERE id = %(id)s;

-- name: finish_incident
UPDATE incidents SET finished_at = now() WHERE id = %(id)s RETURNING done_count;

-- name: set_account_locale
UPDATE accounts SET locale = %(locale)s, updated_at = now() WHERE id = %(account_id)s RETURNING id;
-- name: lock_credentials
-- Serialises changes of one account's password (a reset completing, a password change), taken
-- before any row they touch.
SELECT pg_advisory_xact_lock(hashtextextended('credentials:' || %(account_id)s::text, 0)) AS locked;

-- name: kill_pending_proofs
-- The proofs a password change or reset leaves behind die with the old password: pending
-- mfa_tokens, step-up challenges, other resets, password change tokens. (An mfa_token is also
-- bound to the password hash it was issued for, password_fp, which closes the races.)
WITH challenges AS (
    UPDATE step_up_challenges SET dead_at = now()
     WHERE account_id = %(account_id)s AND verified_at IS NULL AND dead_at IS NULL
    RETURNING 1
), resets AS (
    UPDATE password_resets SET dead_at = now()
     WHERE account_id = %(account_id)s AND completed_at IS NULL AND dead_at IS NULL
    RETURNING 1
), change_tokens AS (
    UPDATE password_change_tokens SET expires_at = least(expires_at, now())
     WHERE account_id = %(account_id)s AND used_at IS NULL AND expires_at > now()
    RETURNING 1
), mfa AS (
    -- SKIP LOCKED: a token being answered right now is not waited for (no lock cycle with
    -- login, which locks the token before the account); the password_fp check refuses it.
    UPDATE mfa_tokens SET dead_at = now()
     WHERE id IN (SELECT id FROM mfa_tokens
                   WHERE account_id = %(account_id)s AND used_at IS NULL AND dead_at IS NULL
                     AND expires_at > now()
                     FOR UPDATE SKIP LOCKED)
    RETURNING 1
)
SELECT (SELECT count(*) FROM mfa) AS mfa_tokens, (SELECT count(*) FROM challenges) AS step_up_challenges,
       (SELECT count(*) FROM resets) AS resets, (SELECT count(*) FROM change_tokens) AS password_change_tokens;


-- ---------------------------------------------------------------- device tokens (known devices)
-- name: insert_device_token
INSERT INTO device_tokens (id, account_id, token_hash, device_name, expires_at)
VALUES (%(id)s, %(account_id)s, %(token_hash)s, %(device_name)s, now() + make_interval(secs => %(ttl)s))
RETURNING id;

-- name: live_device_token
SELECT id, account_id FROM device_tokens
 WHERE token_hash = %(token_hash)s AND revoked_at IS NULL AND expires_at > now();

-- name: live_device_token_of_session
-- The device token a session was opened from, while it is a live token of the session's account.
SELECT d.id FROM sessions s
  JOIN device_tokens d ON d.id = s.device_token_id AND d.account_id = s.account_id
 WHERE s.id = %(session_id)s AND d.revoked_at IS NULL AND d.expires_at > now();

-- name: touch_device_token
UPDATE device_tokens SET last_used_at = now(), expires_at = now() + make_interval(secs => %(ttl)s)
 WHERE id = %(id)s AND account_id = %(account_id)s AND revoked_at IS NULL AND expires_at > now()
RETURNING id;

-- name: revoke_device_tokens
UPDATE device_tokens SET revoked_at = now(), revoked_reason = %(reason)s
 WHERE account_id = %(account_id)s AND revoked_at IS NULL
   AND (%(keep)s::uuid IS NULL OR id <> %(keep)s::uuid)
RETURNING id;

-- name: revoke_device_token
UPDATE device_tokens SET revoked_at = now(), revoked_reason = %(reason)s
 WHERE id = %(id)s AND account_id = %(account_id)s AND revoked_at IS NULL
RETURNING id;

-- name: live_device_token_count
SELECT count(*) AS n FROM device_tokens
 WHERE account_id = %(account_id)s AND revoked_at IS NULL AND expires_at > now();

-- name: session_device_token
SELECT device_token_id FROM sessions WHERE id = %(session_id)s;

-- name: insert_login_pass
INSERT INTO login_passes (id, account_id, token_hash, expires_at)
VALUES (%(id)s, %(account_id)s, %(token_hash)s, now() + make_interval(secs => %(ttl)s));

-- name: live_login_pass
SELECT p.id FROM login_passes p
 WHERE p.token_hash = %(token_hash)s AND p.account_id = %(account_id)s
   AND p.used_at IS NULL AND p.expires_at > now();

-- name: consume_login_pass
UPDATE login_passes SET used_at = now()
 WHERE id = %(id)s AND used_at IS NULL AND expires_at > now()
RETURNING id;

-- name: login_pass_failed
UPDATE login_passes
   SET attempts = attempts + 1,
       used_at = CASE WHEN attempts + 1 >= %(max_attempts)s THEN now() ELSE used_at END
 WHERE id = %(id)s AND used_at IS NULL
RETURNING attempts >= %(max_attempts)s AS dead;
