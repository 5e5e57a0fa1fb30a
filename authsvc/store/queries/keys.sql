-- ES256 signing keys (services/platform/keys.py). Parameters are %(name)s.
-- The signing key is the most recently created key whose activate_at has come and that stays
-- published for at least one more access-token lifetime; every key whose publish_until is
-- NULL or in the future is published in the JWKS.

-- name: key_lock
-- Serialises key creation (first start of several processes at once, rotations).
-- 7022647185781389683 = "authkeys" as a big-endian bigint.
SELECT pg_advisory_xact_lock(7022647185781389683) AS locked;

-- name: key_clock
SELECT clock_timestamp() AS now;

-- name: key_published
SELECT kid, public_jwk, created_at, activate_at, publish_until
  FROM signing_keys
 WHERE publish_until IS NULL OR publish_until > clock_timestamp()
 ORDER BY created_at DESC, activate_at DESC, kid DESC;

-- name: key_signing
SELECT kid, activate_at, publish_until
  FROM signing_keys
 WHERE activate_at <= clock_timestamp()
   AND (publish_until IS NULL
        OR publish_until > clock_timestamp() + make_interval(secs => %(ttl)s))
 ORDER BY created_at DESC, activate_at DESC, kid DESC
 LIMIT 1;

-- name: key_private
SELECT kid, private_key_enc FROM signing_keys WHERE kid = %(kid)s;

-- name: key_insert
INSERT INTO signing_keys (kid, private_key_enc, public_jwk, created_at, activate_at)
VALUES (%(kid)s, %(private_key_enc)s, %(public_jwk)s::jsonb, clock_timestamp(),
        clock_timestamp() + make_interval(secs => %(activate_in)s))
RETURNING kid, created_at, activate_at;

-- name: key_retire_others
-- After a new key is inserted: every other key still published without an end stays
-- published until the tokens it can still sign (until the new key activates) have expired.
UPDATE signing_keys
   SET publish_until = %(activate_at)s + make_interval(secs => %(grace)s)
 WHERE kid <> %(kid)s AND publish_until IS NULL
RETURNING kid, publish_until;

-- name: key_delete_expired
-- Keys unpublished for a while: nothing can verify against them any more, drop the private half.
DELETE FROM signing_keys
 WHERE publish_until IS NOT NULL
   AND publish_until < clock_timestamp() - make_interval(secs => %(older_than)s)
RETURNING kid;

-- name: key_list
-- Every stored key (operators' `keys list`), newest first, with whether it is published now.
SELECT kid, created_at, activate_at, publish_until,
       (publish_until IS NULL OR publish_until > clock_timestamp()) AS published,
       activate_at <= clock_timestamp() AS active
  FROM signing_keys
 ORDER BY created_at DESC, activate_at DESC, kid DESC;

-- name: key_withdraw
-- A compromised key: unpublished now, so its tokens stop verifying (every process hears of it
-- through the signing_keys trigger).
UPDATE signing_keys
   SET publish_until = clock_timestamp()
 WHERE kid = %(kid)s AND (publish_until IS NULL OR publish_until > clock_timestamp())
RETURNING kid;
