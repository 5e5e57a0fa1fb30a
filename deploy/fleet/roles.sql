-- A database role per purpose for a fleet (example; run as a superuser, in database authsvc).
-- The same split as deploy/compose/initdb/10-roles.sql, plus the roles a fleet adds.
--
--   authsvc_owner    owns the schema; runs `authsvc db upgrade` (directly, not through PgBouncer:
--                    migrations hold a session advisory lock). Never used by a replica.
--   authsvc_app      every replica (through PgBouncer): reads and writes rows, owns nothing, so it
--                    cannot disable the audit log's append-only triggers; it seals the audit chain.
--   authsvc_auditor  `authsvc audit verify` / `audit tail` from an operator's machine: reads the
--                    log, its seals and checkpoints and the sealed chain key; writes nothing
--                    (verify then notes that it could not seal waiting rows and checks the rest).
--   authsvc_monitor  dashboards and alerts: pg_monitor's statistics views, no table data.
CREATE ROLE authsvc_owner LOGIN PASSWORD 'change-me';
CREATE ROLE authsvc_app LOGIN PASSWORD 'change-me' CONNECTION LIMIT 2000;
CREATE ROLE authsvc_auditor LOGIN PASSWORD 'change-me';
CREATE ROLE authsvc_monitor LOGIN PASSWORD 'change-me' CONNECTION LIMIT 5;
GRANT pg_monitor TO authsvc_monitor;

ALTER DATABASE authsvc OWNER TO authsvc_owner;
ALTER SCHEMA public OWNER TO authsvc_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO authsvc_app, authsvc_auditor;

-- every table, sequence and function the owner makes, now and in later migrations
ALTER DEFAULT PRIVILEGES FOR ROLE authsvc_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO authsvc_app;
ALTER DEFAULT PRIVILEGES FOR ROLE authsvc_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO authsvc_app;
ALTER DEFAULT PRIVILEGES FOR ROLE authsvc_owner IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO authsvc_app;

-- after the first `authsvc db upgrade` (the audit tables exist then), as authsvc_owner:
--   GRANT SELECT ON audit_log, audit_seals, audit_sealing, audit_checkpoints, audit_chain_keys
--       TO authsvc_auditor;
