-- Ciphertext per encryption key id, and re-encryption under the newest key
-- (services/platform/reencrypt.py). A Cipher token is "v1.<kid>.<data>": split_part(col, '.', 2) is its kid.

-- name: key_usage
SELECT 'totp_secrets' AS what, split_part(totp_secret_enc, '.', 2) AS kid, count(*) AS n
  FROM factors WHERE totp_secret_enc IS NOT NULL GROUP BY 2
UNION ALL
SELECT 'signing_keys', split_part(private_key_enc, '.', 2), count(*) FROM signing_keys GROUP BY 2
UNION ALL
SELECT 'outbox', split_part(payload, '.', 2), count(*)
  FROM outbox WHERE delivered_at IS NULL AND payload <> '' GROUP BY 2
UNION ALL
SELECT 'audit_chain_key', split_part(key_enc, '.', 2), count(*) FROM audit_chain_keys GROUP BY 2
ORDER BY 1, 2;

-- name: reencrypt_totp_batch
SELECT id::text AS id, totp_secret_enc AS sealed FROM factors
 WHERE totp_secret_enc IS NOT NULL AND split_part(totp_secret_enc, '.', 2) <> %(kid)s
   AND id > %(after)s::uuid
 ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED;

-- name: reencrypt_totp_update
UPDATE factors SET totp_secret_enc = %(new)s WHERE id = %(id)s::uuid AND totp_secret_enc = %(old)s;

-- name: reencrypt_signing_key_batch
SELECT kid AS id, private_key_enc AS sealed FROM signing_keys
 WHERE split_part(private_key_enc, '.', 2) <> %(kid)s AND kid > %(after)s
 ORDER BY kid LIMIT %(limit)s FOR UPDATE SKIP LOCKED;

-- name: reencrypt_signing_key_update
UPDATE signing_keys SET private_key_enc = %(new)s WHERE kid = %(id)s AND private_key_enc = %(old)s;

-- name: reencrypt_outbox_batch
SELECT id::text AS id, kind, payload AS sealed FROM outbox
 WHERE delivered_at IS NULL AND payload <> '' AND split_part(payload, '.', 2) <> %(kid)s
   AND id > %(after)s::bigint
 ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED;

-- name: reencrypt_outbox_update
UPDATE outbox SET payload = %(new)s
 WHERE id = %(id)s::bigint AND payload = %(old)s AND delivered_at IS NULL;
