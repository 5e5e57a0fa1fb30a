-- The keyed hash chain of the audit log, its key and its checkpoints (services/audit.py).

-- name: audit_lock
-- Writers of the chain (and checkpoints) serialise on this lock until their commit.
SELECT pg_advisory_xact_lock(7964281) AS locked;

-- name: audit_last_hash
SELECT id, hash, chain FROM audit_log ORDER BY id DESC LIMIT 1;

-- name: audit_insert
INSERT INTO audit_log (at, actor, action, account_id, detail, prev_hash, hash, chain)
VALUES (%(at)s, %(actor)s, %(action)s, %(account_id)s, %(detail)s, %(prev_hash)s, %(hash)s, %(chain)s);

-- name: audit_tail
SELECT * FROM (SELECT * FROM audit_log ORDER BY id DESC LIMIT %(limit)s) t ORDER BY id;

-- name: audit_page
SELECT id, at, actor, action, account_id, detail, prev_hash, hash, chain FROM audit_log
 WHERE id > %(after)s ORDER BY id LIMIT %(limit)s;

-- name: audit_key_get
SELECT id, key_enc FROM audit_chain_keys WHERE id = 1;

-- name: audit_key_insert
INSERT INTO audit_chain_keys (id, key_enc) VALUES (1, %(key_enc)s) ON CONFLICT (id) DO NOTHING;

-- name: audit_key_rewrap
UPDATE audit_chain_keys SET key_enc = %(key_enc)s WHERE id = %(id)s AND key_enc = %(old)s;

-- name: audit_checkpoint_last
SELECT id, at, last_id, head, mac FROM audit_checkpoints ORDER BY id DESC LIMIT 1;

-- name: audit_checkpoints_all
SELECT id, at, last_id, head, mac FROM audit_checkpoints ORDER BY id;

-- name: audit_checkpoint_insert
INSERT INTO audit_checkpoints (at, last_id, head, mac)
VALUES (%(at)s, %(last_id)s, %(head)s, %(mac)s)
RETURNING id;

-- name: audit_row_hash
SELECT id, hash FROM audit_log WHERE id = %(id)s;

-- name: audit_clock
SELECT clock_timestamp() AS now;
