-- Login (mfa tokens), sessions, refresh tokens, known devices, API clients.

-- name: account_by_email
SELECT * FROM accounts WHERE email_normalized = %(email_normalized)s;

-- name: update_password_hash
-- A rehash with new parameters: only while the hash it replaces is still the current one (a
-- reset that committed meanwhile must not be undone by a login with the old password).
UPDATE accounts SET password_hash = %(password_hash)s, updated_at = now()
 WHERE id = %(account_id)s AND password_hash = %(old_hash)s;

-- name: insert_mfa_token
INSERT INTO mfa_tokens (id, token_hash, account_id, methods, webauthn_challenge, sms_code_mac,
                        ip, user_agent, device_id, password_fp, expires_at)
VALUES (%(id)s, %(token_hash)s, %(account_id)s, %(methods)s, %(webauthn_challenge)s, %(sms_code_mac)s,
        %(ip)s, %(user_agent)s, %(device_id)s, %(password_fp)s, now() + make_interval(secs => %(ttl)s));

-- name: lock_live_mfa_token
SELECT * FROM mfa_tokens
 WHERE token_hash = %(token_hash)s AND used_at IS NULL AND dead_at IS NULL AND expires_at > now()
 FOR UPDATE;

-- name: mfa_token_failed
UPDATE mfa_tokens
   SET failed_attempts = failed_attempts + 1,
       dead_at = CASE WHEN failed_attempts + 1 >= %(max_attempts)s THEN now() END
 WHERE id = %(id)s AND used_at IS NULL AND dead_at IS NULL
RETURNING dead_at IS NOT NULL AS dead;

-- name: consume_mfa_token
UPDATE mfa_tokens SET used_at = now()
 WHERE id = %(id)s AND used_at IS NULL AND dead_at IS NULL AND expires_at > now()
RETURNING id;

-- name: insert_session
INSERT INTO sessions (id, account_id, acr, amr, auth_time, ip, user_agent, device_id, device_name, device_token_id)
VALUES (%(id)s, %(account_id)s, %(acr)s, %(amr)s, now(), %(ip)s, %(user_agent)s, %(device_id)s, %(device_name)s,
        %(device_token_id)s)
RETURNING *;

-- name: insert_refresh_token
-- A refresh token never outlives its session: it expires at the idle timeout from now or at
-- the session's absolute end, whichever comes first.
INSERT INTO refresh_tokens (id, session_id, token_hash, expires_at)
SELECT %(id)s, s.id, %(token_hash)s,
       least(now() + make_interval(secs => %(idle)s), s.auth_time + make_interval(secs => %(max_age)s))
  FROM sessions s WHERE s.id = %(session_id)s;

-- name: lock_session_of_refresh_token
-- Lock order for everything that changes a session's refresh tokens: the session row first,
-- then its tokens. Concurrent presentations of one token queue here.
SELECT s.*, a.status AS account_status,
       (s.revoked_at IS NULL
        AND s.auth_time > now() - make_interval(secs => %(max_age)s)
        AND s.last_seen_at > now() - make_interval(secs => %(idle)s)) AS live
  FROM refresh_tokens r
  JOIN sessions s ON s.id = r.session_id
  JOIN accounts a ON a.id = s.account_id
 WHERE r.token_hash = %(token_hash)s
   FOR UPDATE OF s;

-- name: use_refresh_token
UPDATE refresh_tokens SET used_at = now()
 WHERE token_hash = %(token_hash)s AND used_at IS NULL AND expires_at > now()
RETURNING session_id;

-- name: refresh_token_session
SELECT session_id, used_at FROM refresh_tokens WHERE token_hash = %(token_hash)s;

-- name: session_refreshed
-- The address a refresh came from is the session's latest (the session list shows it); a
-- refresh from another device also relabels the session with that device.
UPDATE sessions SET last_seen_at = now(), ip = coalesce(%(ip)s, ip),
       user_agent = coalesce(%(user_agent)s, user_agent), device_name = coalesce(%(device_name)s, device_name)
 WHERE id = %(session_id)s;

-- name: live_session
-- Live: not revoked, signed in less than max_age ago, used less than idle ago.
SELECT s.*, a.status AS account_status
  FROM sessions s JOIN accounts a ON a.id = s.account_id
 WHERE s.id = %(session_id)s AND s.revoked_at IS NULL
   AND s.auth_time > now() - make_interval(secs => %(max_age)s)
   AND s.last_seen_at > now() - make_interval(secs => %(idle)s);

-- name: live_session_touch
-- The live session of an access token (as live_session: not revoked, signed in less than
-- max_age ago, used less than idle ago), and last_seen_at (and the IP, when given) refreshed
-- at most every 30 seconds; one statement, so bearer checks and introspection cost one round trip.
WITH s AS (
  SELECT s.*, a.status AS account_status
    FROM sessions s JOIN accounts a ON a.id = s.account_id
   WHERE s.id = %(session_id)s AND s.account_id = %(account_id)s AND s.revoked_at IS NULL
     AND s.auth_time > now() - make_interval(secs => %(max_age)s)
     AND s.last_seen_at > now() - make_interval(secs => %(idle)s)
), touched AS (
  UPDATE sessions SET last_seen_at = now(), ip = coalesce(%(ip)s, sessions.ip)
   WHERE id = (SELECT id FROM s WHERE account_status = 'active')
     AND revoked_at IS NULL AND last_seen_at < now() - interval '30 seconds'
  RETURNING id
)
SELECT s.*, (SELECT count(*) FROM touched) AS touched FROM s;

-- name: revoke_session
UPDATE sessions SET revoked_at = now(), revoked_reason = %(reason)s
 WHERE id = %(session_id)s AND account_id = %(account_id)s AND revoked_at IS NULL
RETURNING id;

-- name: revoke_other_sessions
UPDATE sessions SET revoked_at = now(), revoked_reason = %(reason)s
 WHERE account_id = %(account_id)s AND id <> %(keep)s AND revoked_at IS NULL
RETURNING id;

-- name: kill_refresh_tokens_of_session
UPDATE refresh_tokens SET used_at = coalesce(used_at, now()), expires_at = least(expires_at, now())
 WHERE session_id = %(session_id)s;

-- name: sessions_of_account
SELECT id, created_at, last_seen_at, ip, user_agent, device_name
  FROM sessions WHERE account_id = %(account_id)s AND revoked_at IS NULL
   AND auth_time > now() - make_interval(secs => %(max_age)s)
   AND last_seen_at > now() - make_interval(secs => %(idle)s)
 ORDER BY created_at;

-- name: insert_client
INSERT INTO clients (id, name, secret_hash) VALUES (%(id)s, %(name)s, %(secret_hash)s);

-- name: client_by_id
SELECT * FROM clients WHERE id = %(id)s AND revoked_at IS NULL;

-- name: list_clients
SELECT id, name, created_at, revoked_at FROM clients ORDER BY created_at;

-- name: revoke_client
-- Workers that cache client credentials (services/core/clients.py) hear of it at commit.
WITH revoked AS (
  UPDATE clients SET revoked_at = now() WHERE id = %(id)s AND revoked_at IS NULL RETURNING id
)
SELECT id, pg_notify('authsvc_clients', id) FROM revoked;
