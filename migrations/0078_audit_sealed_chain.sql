-- The audit log without a global lock on the request path (services/audit.py, issue 17).
--
-- Until now every audited write took one advisory lock to read the chain head and link its row
-- to it, and held it to COMMIT. From here on:
-- * a request inserts its row unlinked (chain = 3): the row's own HMAC under the chain key
--   covers its content and a random nonce (a copy of a row is refused by a unique index), so a
--   role without the encryption key still cannot write a row that verifies;
-- * a trigger queues every new row in audit_unsealed;
-- * after commit, a sealer (a thread in every replica; one at a time, under a transaction-scoped
--   advisory lock that no request takes) links the committed rows into the chain in
--   audit_seals: seal n = HMAC(chain key, seal n-1, n, row id, the row's HMAC). Seals are
--   append-only like the log. A row committed but not sealed yet (a crash, an outage) is still
--   queued and sealed by the next round of any replica;
-- * checkpoints now name a seal (seq), so rows or seals cut off the end are found as before.
-- Rows up to audit_sealing.linked_until (everything written before this migration, under the
-- old lock) keep their linked chain and are verified as before; the first seal links onto the
-- newest of them.

-- taken so that no writer of the old version is between its INSERT and COMMIT
SELECT pg_advisory_xact_lock(7964281);

CREATE TABLE audit_sealing (
    id            smallint PRIMARY KEY DEFAULT 1 CHECK (id = 1),
    linked_until  bigint NOT NULL
);
INSERT INTO audit_sealing (linked_until) SELECT coalesce(max(id), 0) FROM audit_log;

ALTER TABLE audit_log ADD COLUMN nonce bytea;
CREATE UNIQUE INDEX audit_log_unlinked_mac ON audit_log (hash) WHERE chain = 3;

CREATE TABLE audit_seals (
    seq        bigint PRIMARY KEY,
    row_id     bigint NOT NULL UNIQUE,
    hash       bytea NOT NULL,
    sealed_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_unsealed (
    row_id  bigint PRIMARY KEY
);

ALTER TABLE audit_checkpoints ADD COLUMN seq bigint;  -- the seal it covers (NULL: a linked row)

CREATE TRIGGER audit_seals_append_only BEFORE UPDATE OR DELETE ON audit_seals
    FOR EACH ROW EXECUTE FUNCTION authsvc_append_only();
CREATE TRIGGER audit_seals_no_truncate BEFORE TRUNCATE ON audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION authsvc_append_only();
CREATE TRIGGER audit_sealing_append_only BEFORE UPDATE OR DELETE ON audit_sealing
    FOR EACH ROW EXECUTE FUNCTION authsvc_append_only();
CREATE TRIGGER audit_sealing_no_truncate BEFORE TRUNCATE ON audit_sealing
    FOR EACH STATEMENT EXECUTE FUNCTION authsvc_append_only();

CREATE FUNCTION authsvc_audit_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_unsealed (row_id) VALUES (NEW.id);
    RETURN NULL;
END
$$;
CREATE TRIGGER audit_log_queue AFTER INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION authsvc_audit_queue();

-- Migration 0060's rules, with the unlinked rows and the seals: keyed rows only (chain 2, still
-- written by the previous version during a rolling upgrade, or 3) once the chain key exists;
-- a checkpoint names an existing row with its hash, or an existing seal with its hash.
CREATE OR REPLACE FUNCTION authsvc_audit_keyed_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.chain NOT IN (2, 3) AND EXISTS (SELECT 1 FROM audit_chain_keys) THEN
        RAISE EXCEPTION 'audit_log takes keyed rows only once the chain key exists: chain % refused', NEW.chain
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE FUNCTION authsvc_audit_checkpoint_sane() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.at > clock_timestamp() THEN
        RAISE EXCEPTION 'audit checkpoint dated in the future (%) refused', NEW.at
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.seq IS NULL AND NOT EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.last_id AND hash = NEW.head)
       OR NEW.seq IS NOT NULL AND NOT EXISTS (SELECT 1 FROM audit_seals
                                               WHERE seq = NEW.seq AND row_id = NEW.last_id AND hash = NEW.head) THEN
        RAISE EXCEPTION 'audit checkpoint names no row % with that hash: refused', NEW.last_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
