-- Step-up challenges and tokens.

-- name: insert_step_up_challenge
INSERT INTO step_up_challenges (id, account_id, session_id, action, transaction, transaction_hash,
                                methods, webauthn_challenge, recurring, expires_at)
VALUES (%(id)s, %(account_id)s, %(session_id)s, %(action)s, %(transaction)s, %(transaction_hash)s,
        %(methods)s, %(webauthn_challenge)s, %(recurring)s, now() + make_interval(secs => %(ttl)s));

-- name: lock_live_step_up_challenge
SELECT * FROM step_up_challenges
 WHERE id = %(id)s AND session_id = %(session_id)s
   AND verified_at IS NULL AND dead_at IS NULL AND expires_at > now()
 FOR UPDATE;

-- name: step_up_challenge_failed
UPDATE step_up_challenges
   SET failed_attempts = failed_attempts + 1,
       dead_at = CASE WHEN failed_attempts + 1 >= %(max_attempts)s THEN now() END
 WHERE id = %(id)s AND verified_at IS NULL AND dead_at IS NULL
RETURNING dead_at IS NOT NULL AS dead;

-- name: step_up_challenge_verified
UPDATE step_up_challenges SET verified_at = now()
 WHERE id = %(id)s AND verified_at IS NULL AND dead_at IS NULL AND expires_at > now()
RETURNING id;

-- name: insert_step_up_token
INSERT INTO step_up_tokens (id, token_hash, challenge_id, account_id, session_id, action, transaction,
                            transaction_hash, acr, amr, expires_at)
VALUES (%(id)s, %(token_hash)s, %(challenge_id)s, %(account_id)s, %(session_id)s, %(action)s,
        %(transaction)s, %(transaction_hash)s, %(acr)s, %(amr)s, now() + make_interval(secs => %(ttl)s));

-- name: lock_step_up_token
SELECT t.*, (t.expires_at > now()) AS live,
       (s.revoked_at IS NULL
        AND s.auth_time > now() - make_interval(secs => %(max_age)s)
        AND s.last_seen_at > now() - make_interval(secs => %(idle)s)) AS session_live
  FROM step_up_tokens t JOIN sessions s ON s.id = t.session_id
 WHERE t.token_hash = %(token_hash)s
 FOR UPDATE OF t;

-- name: redeem_step_up_token
UPDATE step_up_tokens SET redeemed_at = now(), redeemed_by = %(redeemed_by)s
 WHERE id = %(id)s AND redeemed_at IS NULL AND expires_at > now()
RETURNING verified_at;
