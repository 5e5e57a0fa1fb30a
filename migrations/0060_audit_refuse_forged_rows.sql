-- Forged audit rows are refused by PostgreSQL itself, whatever role inserts them (only the
-- tables' owner can disable these triggers; the service does not run as the owner, README
-- "Database roles"):
-- * once the chain key exists, audit_log takes keyed rows only (chain = 2): an unkeyed
--   ("legacy") row is all a role without the encryption key could compute, so it can only be
--   a forgery (a version from before migration 0030 cannot write the log any more: upgrade
--   from it with a stop, not a rolling restart);
-- * the chain key cannot be deleted (that would reopen the legacy path); re-wrapping it under
--   a new encryption key (UPDATE) stays possible;
-- * a checkpoint must be dated no later than the database's clock (one dated in the future
--   stopped every later checkpoint) and must name an existing row with that row's hash.
-- `authsvc audit verify` refuses the same rows (services/audit.py).

CREATE FUNCTION authsvc_audit_keyed_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.chain IS DISTINCT FROM 2 AND EXISTS (SELECT 1 FROM audit_chain_keys) THEN
        RAISE EXCEPTION 'audit_log takes keyed rows only once the chain key exists: chain % refused', NEW.chain
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_log_keyed_only BEFORE INSERT ON audit_log
    FOR EACH ROW EXECUTE FUNCTION authsvc_audit_keyed_only();

CREATE TRIGGER audit_chain_keys_no_delete BEFORE DELETE ON audit_chain_keys
    FOR EACH ROW EXECUTE FUNCTION authsvc_append_only();
CREATE TRIGGER audit_chain_keys_no_truncate BEFORE TRUNCATE ON audit_chain_keys
    FOR EACH STATEMENT EXECUTE FUNCTION authsvc_append_only();

CREATE FUNCTION authsvc_audit_checkpoint_sane() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.at > clock_timestamp() THEN
        RAISE EXCEPTION 'audit checkpoint dated in the future (%) refused', NEW.at
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.last_id AND hash = NEW.head) THEN
        RAISE EXCEPTION 'audit checkpoint names no row % with that hash: refused', NEW.last_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER audit_checkpoints_sane BEFORE INSERT ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION authsvc_audit_checkpoint_sane();
