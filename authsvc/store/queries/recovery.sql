-- Password resets and contact changes.

-- name: reset_sms_sent_recently
SELECT count(*) FILTER (WHERE account_id = %(account_id)s) AS per_account,
       count(*) FILTER (WHERE phone = %(phone)s) AS per_phone,
       count(*) FILTER (WHERE account_id = %(account_id)s AND client_key = %(client_key)s) AS per_client
  FROM password_resets
 WHERE created_at > now() - interval '1 hour' AND phone IS NOT NULL
   AND (account_id = %(account_id)s OR phone = %(phone)s)
   AND from_known_device = %(known)s;

-- name: insert_password_reset
INSERT INTO password_resets (id, account_id, phone, from_known_device, client_key, sms_code_mac, expires_at)
VALUES (%(id)s, %(account_id)s, %(phone)s, %(from_known_device)s, %(client_key)s, %(sms_code_mac)s,
        now() + make_interval(secs => %(ttl)s));

-- name: lock_live_password_reset
SELECT * FROM password_resets
 WHERE id = %(id)s AND completed_at IS NULL AND dead_at IS NULL AND expires_at > now()
 FOR UPDATE;

-- name: password_reset_failed
UPDATE password_resets
   SET failed_attempts = failed_attempts + 1,
       dead_at = CASE WHEN failed_attempts + 1 >= %(max_attempts)s THEN now() END
 WHERE id = %(id)s AND completed_at IS NULL AND dead_at IS NULL
RETURNING dead_at IS NOT NULL AS dead;

-- name: password_reset_sms_verified
UPDATE password_resets
   SET sms_verified_at = now(), methods = %(methods)s, webauthn_challenge = %(webauthn_challenge)s
 WHERE id = %(id)s AND sms_verified_at IS NULL AND dead_at IS NULL
RETURNING id;

-- name: password_reset_factor_verified
UPDATE password_resets SET reset_token_hash = %(reset_token_hash)s
 WHERE id = %(id)s AND sms_verified_at IS NOT NULL AND reset_token_hash IS NULL AND dead_at IS NULL
RETURNING id;

-- name: complete_password_reset
UPDATE password_resets SET completed_at = now()
 WHERE id = %(id)s AND reset_token_hash = %(reset_token_hash)s
   AND completed_at IS NULL AND dead_at IS NULL AND expires_at > now()
RETURNING account_id;

-- name: insert_contact_change
INSERT INTO contact_changes (id, account_id, kind, new_value, new_normalized, code_mac, value_taken, expires_at)
VALUES (%(id)s, %(account_id)s, %(kind)s, %(new_value)s, %(new_normalized)s, %(code_mac)s, %(value_taken)s,
        now() + make_interval(secs => %(ttl)s));

-- name: lock_live_contact_change
SELECT * FROM contact_changes
 WHERE id = %(id)s AND account_id = %(account_id)s
   AND completed_at IS NULL AND dead_at IS NULL AND expires_at > now()
 FOR UPDATE;

-- name: contact_change_failed
UPDATE contact_changes
   SET failed_attempts = failed_attempts + 1,
       dead_at = CASE WHEN failed_attempts + 1 >= %(max_attempts)s THEN now() END
 WHERE id = %(id)s AND completed_at IS NULL AND dead_at IS NULL
RETURNING dead_at IS NOT NULL AS dead;

-- name: complete_contact_change
UPDATE contact_changes SET completed_at = now()
 WHERE id = %(id)s AND completed_at IS NULL AND dead_at IS NULL AND expires_at > now()
RETURNING id;

-- name: set_phone
UPDATE accounts SET phone = %(phone)s, phone_verified_at = now(), updated_at = now() WHERE id = %(account_id)s;

-- name: set_email
UPDATE accounts SET email = %(email)s, email_normalized = %(email_normalized)s,
                    email_skeleton = %(email_skeleton)s, email_verified_at = now(), updated_at = now()
 WHERE id = %(account_id)s;

-- name: kill_older_password_resets
-- Starting a reset kills the account's older ones (a decoy, account_id NULL, matches nothing).
UPDATE password_resets SET dead_at = now()
 WHERE account_id = %(account_id)s AND id <> %(id)s AND completed_at IS NULL AND dead_at IS NULL;
