-- Every change to the signing keys (a rotation from the CLI, a first key made at start, an
-- operator's own SQL) tells every listening process at commit, on channel authsvc_keys, so no
-- process keeps signing with, or publishing, a key set that changed elsewhere
-- (services/keys.py).
CREATE FUNCTION authsvc_signing_keys_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('authsvc_keys', '');
    RETURN NULL;
END;
$$;

CREATE TRIGGER signing_keys_notify
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON signing_keys
    FOR EACH STATEMENT EXECUTE FUNCTION authsvc_signing_keys_changed();
