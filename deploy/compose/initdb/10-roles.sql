-- Two database roles, as README "Database roles" says: authsvc_owner owns the schema and runs
-- the migrations (`authsvc db upgrade`); authsvc_app is the service's role and owns nothing, so
-- it cannot disable the audit log's append-only triggers. Every table and sequence the owner
-- makes (every migration, now and later) is granted to authsvc_app for reading and writing
-- rows only, by default privileges, so no grant has to be repeated after an upgrade.
--
-- The postgres image runs this once, as its superuser in database authsvc, when the data
-- volume is new. The passwords are for this local stack only. tests/test_deploy.py runs this
-- same file (with its own role names) and then the service as authsvc_app.
CREATE ROLE authsvc_owner LOGIN PASSWORD 'owner-local-only';
CREATE ROLE authsvc_app LOGIN PASSWORD 'app-local-only';
ALTER DATABASE authsvc OWNER TO authsvc_owner;
ALTER SCHEMA public OWNER TO authsvc_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO authsvc_app;
ALTER DEFAULT PRIVILEGES FOR ROLE authsvc_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO authsvc_app;
ALTER DEFAULT PRIVILEGES FOR ROLE authsvc_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO authsvc_app;
ALTER DEFAULT PRIVILEGES FOR ROLE authsvc_owner IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO authsvc_app;
