-- The keyed hash chain of the audit log, its key and its checkpoints (services/platform/audit.py).

-- name: audit_lock
-- Only for making the chain key (and, in the previous version, for every write).
SELECT pg_advisory_xact_lock(7964281) AS locked;

-- name: audit_last_hash
SELECT id, hash, chain FROM audit_log ORDER BY id DESC LIMIT 1;

-- name: audit_insert
-- An unlinked row (chain 3): no lock, no read of the head; a trigger queues it for the sealer.
INSERT INTO audit_log (at, actor, action, account_id, detail, nonce, hash, chain)
VALUES (%(at)s, %(actor)s, %(action)s, %(account_id)s, %(detail)s, %(nonce)s, %(hash)s, 3);

-- name: audit_seal_lease
-- One sealer at a time, for one round (its transaction); requests never take it.
SELECT pg_try_advisory_xact_lock(7964282) AS leased;

-- name: audit_linked_until
SELECT linked_until FROM audit_sealing WHERE id = 1;

-- name: audit_linked_head
-- The newest row of the linked chain (before the sealed one): the first seal links onto it.
SELECT id, hash FROM audit_log WHERE id <= %(until)s ORDER BY id DESC LIMIT 1;

-- name: audit_unsealed_batch
-- Queued rows with their MAC (NULL: the row is gone) and whether a seal already covers them
-- (the queue is the service role's to write: a stray entry must not stop the sealer).
SELECT u.row_id, l.hash, s.seq IS NOT NULL AS sealed
  FROM audit_unsealed u LEFT JOIN audit_log l ON l.id = u.row_id LEFT JOIN audit_seals s ON s.row_id = u.row_id
 ORDER BY u.row_id LIMIT %(limit)s;

-- name: audit_unsealed_any
-- The sealer thread's idle check: one statement, no transaction.
SELECT EXISTS (SELECT 1 FROM audit_unsealed) AS waiting;

-- name: audit_seal_last
SELECT seq, row_id, hash FROM audit_seals ORDER BY seq DESC LIMIT 1;

-- name: audit_seals_insert
INSERT INTO audit_seals (seq, row_id, hash)
SELECT * FROM unnest(%(seqs)s::bigint[], %(row_ids)s::bigint[], %(hashes)s::bytea[]);

-- name: audit_unsealed_done
DELETE FROM audit_unsealed WHERE row_id = ANY(%(row_ids)s::bigint[]);

-- name: audit_sealed_page
-- The sealed chain in order, with each seal's row (NULL columns: the row is gone).
SELECT s.seq, s.row_id, s.hash AS seal, l.id, l.at, l.actor, l.action, l.account_id, l.detail,
       l.prev_hash, l.hash, l.chain, l.nonce
  FROM audit_seals s LEFT JOIN audit_log l ON l.id = s.row_id
 WHERE s.seq > %(after)s ORDER BY s.seq LIMIT %(limit)s;

-- name: audit_not_sealed
-- Rows after the linked chain that no seal covers, oldest first, with their age by the
-- database's clock (the sealer's queue is not trusted for this: it is the service's to edit).
SELECT l.id, l.at, l.actor, l.action, l.account_id, l.detail, l.prev_hash, l.hash, l.chain, l.nonce,
       extract(epoch FROM clock_timestamp() - l.at) AS age FROM audit_log l
 WHERE l.id > %(until)s AND NOT EXISTS (SELECT 1 FROM audit_seals s WHERE s.row_id = l.id)
 ORDER BY l.id LIMIT 1000;

-- name: audit_duplicate_mac
-- A copy of an unlinked row (its MAC is unique while the index stands).
SELECT hash FROM audit_log WHERE chain = 3 GROUP BY hash HAVING count(*) > 1 LIMIT 1;

-- name: audit_tail
SELECT * FROM (SELECT * FROM audit_log ORDER BY id DESC LIMIT %(limit)s) t ORDER BY id;

-- name: audit_page
-- The linked chain (rows up to audit_sealing.linked_until), in id order.
SELECT id, at, actor, action, account_id, detail, prev_hash, hash, chain FROM audit_log
 WHERE id > %(after)s AND id <= %(until)s ORDER BY id LIMIT %(limit)s;

-- name: audit_key_get
SELECT id, key_enc FROM audit_chain_keys WHERE id = 1;

-- name: audit_key_insert
INSERT INTO audit_chain_keys (id, key_enc) VALUES (1, %(key_enc)s) ON CONFLICT (id) DO NOTHING;

-- name: audit_key_rewrap
UPDATE audit_chain_keys SET key_enc = %(key_enc)s WHERE id = %(id)s AND key_enc = %(old)s;

-- name: audit_checkpoint_last
SELECT id, at, last_id, seq, head, mac FROM audit_checkpoints ORDER BY id DESC LIMIT 1;

-- name: audit_checkpoints_all
SELECT id, at, last_id, seq, head, mac FROM audit_checkpoints ORDER BY id;

-- name: audit_checkpoint_insert
INSERT INTO audit_checkpoints (at, last_id, seq, head, mac)
VALUES (%(at)s, %(last_id)s, %(seq)s, %(head)s, %(mac)s)
RETURNING id;

-- name: audit_clock
SELECT clock_timestamp() AS now;
