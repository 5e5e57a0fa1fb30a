-- Named queries. Each starts with "-- name: <query_name>"; parameters are %(name)s.

-- ---------------------------------------------------------------- registrations
-- name: account_taking_email
-- The account whose email is this one, normalised or look-alike (same confusable skeleton);
-- its own stored address is where a notice goes. except_account: the one changing its email.
SELECT email FROM accounts
 WHERE (email_normalized = %(email_normalized)s OR email_skeleton = %(email_skeleton)s)
   AND id IS DISTINCT FROM %(except_account)s::uuid
 ORDER BY (email_normalized = %(email_normalized)s) DESC
 LIMIT 1;

-- name: recent_registration_sms_count
SELECT count(*) AS n FROM registrations
 WHERE phone = %(phone)s AND created_at > now() - interval '1 hour';

-- name: insert_registration
INSERT INTO registrations (id, email, email_normalized, phone, password_hash,
                           phone_code_mac, email_code_mac, email_taken, owner_notified, locale, expires_at)
VALUES (%(id)s, %(email)s, %(email_normalized)s, %(phone)s, %(password_hash)s,
        %(phone_code_mac)s, %(email_code_mac)s, %(email_taken)s, %(owner_notified)s, %(locale)s,
        now() + make_interval(secs => %(ttl)s))
RETURNING id;

-- name: lock_live_registration
SELECT * FROM registrations
 WHERE id = %(id)s AND consumed_at IS NULL AND dead_at IS NULL AND expires_at > now()
 FOR UPDATE;

-- name: registration_failed_attempt
UPDATE registrations
   SET failed_attempts = failed_attempts + 1,
       dead_at = CASE WHEN failed_attempts + 1 >= %(max_attempts)s THEN now() END
 WHERE id = %(id)s AND consumed_at IS NULL AND dead_at IS NULL
RETURNING dead_at IS NOT NULL AS dead;

-- name: consume_registration
UPDATE registrations SET consumed_at = now()
 WHERE id = %(id)s AND consumed_at IS NULL AND dead_at IS NULL AND expires_at > now()
RETURNING *;

-- name: insert_account
INSERT INTO accounts (id, email, email_normalized, email_skeleton, phone, password_hash, webauthn_user_id,
                      locale, email_verified_at, phone_verified_at)
VALUES (%(id)s, %(email)s, %(email_normalized)s, %(email_skeleton)s, %(phone)s, %(password_hash)s,
        %(webauthn_user_id)s, %(locale)s, now(), now())
RETURNING *;

-- name: insert_enrollment_token
INSERT INTO enrollment_tokens (id, account_id, token_hash, expires_at)
VALUES (%(id)s, %(account_id)s, %(token_hash)s, now() + make_interval(secs => %(ttl)s))
RETURNING id, expires_at;

-- name: lock_phone
-- Serialises per-phone SMS limits: count-then-insert must not race.
SELECT pg_advisory_xact_lock(hashtextextended('sms-phone:' || %(phone)s, 0)) AS locked;

-- name: accounts_without_skeleton
SELECT id, email_normalized FROM accounts
 WHERE email_skeleton IS NULL AND (%(after)s::uuid IS NULL OR id > %(after)s::uuid)
 ORDER BY id LIMIT %(limit)s;

-- name: set_email_skeleton
UPDATE accounts SET email_skeleton = %(email_skeleton)s WHERE id = %(id)s AND email_skeleton IS NULL;
