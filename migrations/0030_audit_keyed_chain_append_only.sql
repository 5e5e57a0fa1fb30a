-- The audit log becomes tamper-evident against the application's own database role:
-- * rows written from now on are chained with an HMAC (chain = 2) whose key the database does
--   not hold in the clear (it is kept in audit_chain_keys encrypted under
--   AUTHSVC_ENCRYPTION_KEY); rows written before (or by the previous version during a rolling
--   upgrade: the column defaults to 1) keep their SHA-256 chain (chain = 1) and are anchored by
--   the next keyed row or checkpoint;
-- * audit_log and audit_checkpoints refuse UPDATE, DELETE and TRUNCATE, whoever asks (only the
--   owner of the tables, i.e. the migration role, can disable the triggers: run the service
--   under a role that is not the owner, see README "Database roles");
-- * checkpoints (signed chain heads, also published to the log and the audit.checkpoint
--   webhook) let `authsvc audit verify` detect rows cut off the end.

ALTER TABLE audit_log ADD COLUMN chain smallint NOT NULL DEFAULT 1;

CREATE TABLE audit_chain_keys (
    id         smallint PRIMARY KEY,
    key_enc    text NOT NULL,            -- Cipher token, AAD "audit-chain-key:<id>"
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_checkpoints (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL,
    last_id  bigint NOT NULL,            -- the newest audit_log row it covers
    head     bytea NOT NULL,             -- that row's hash
    mac      bytea NOT NULL              -- HMAC under the chain key of (at, last_id, head)
);

CREATE FUNCTION authsvc_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION authsvc_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION authsvc_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION authsvc_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION authsvc_append_only();
