-- SMS caps: the broad scopes ('total', 'country:..') in shards, so that decisions far below
-- their cap do not wait for each other's COMMIT (services/sms_policy.py, issue 17). Replaces the
-- decision function of migration 0071 (no release ever ran it).
--
-- A scope with K shards has K lock rows and counters per shard. A decision locks one free shard
-- (SKIP LOCKED; it waits only when all K are taken, or while another decision makes a scope's
-- rows on its first use) and reads the committed count of all shards:
--   * count + K <= cap: counted in its shard. At most K decisions hold a shard of the scope at
--     once, and each read the count after taking its shard, so however they commit the scope
--     never goes over its cap;
--   * count >= cap: refused;
--   * in between: exact, as with one lock: it gives its shard back (the savepoint of the fast
--     path is rolled back), takes all K shards in order, counts again and sends only if
--     count + 1 <= cap.
-- K is chosen by the service (1 for small caps: one row, exact and serialised; at most 8).

DROP FUNCTION authsvc_sms_take(text[], integer[], boolean);

ALTER TABLE sms_cap_scopes ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE sms_cap_scopes DROP CONSTRAINT sms_cap_scopes_pkey, ADD PRIMARY KEY (scope, shard);
ALTER TABLE sms_cap_counts ADD COLUMN shard smallint NOT NULL DEFAULT 0;
ALTER TABLE sms_cap_counts DROP CONSTRAINT sms_cap_counts_pkey, ADD PRIMARY KEY (scope, shard, minute);

CREATE FUNCTION authsvc_sms_lock(p_scope text, p_shard integer) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    LOOP  -- again if a prune removed the row between the two statements
        INSERT INTO sms_cap_scopes (scope, shard, last_used) VALUES (p_scope, p_shard, now())
        ON CONFLICT (scope, shard) DO NOTHING;
        PERFORM 1 FROM sms_cap_scopes WHERE scope = p_scope AND shard = p_shard FOR UPDATE;
        EXIT WHEN FOUND;
    END LOOP;
    -- refreshed at most every 10 minutes (the prune keeps rows used within 2 hours)
    UPDATE sms_cap_scopes SET last_used = now()
     WHERE scope = p_scope AND shard = p_shard AND last_used < now() - interval '10 minutes';
END
$$;

CREATE FUNCTION authsvc_sms_used(p_scope text) RETURNS integer LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(sent), 0)::integer FROM sms_cap_counts
     WHERE scope = p_scope AND minute >= date_trunc('minute', now()) - interval '60 minutes'
$$;

-- One SMS decision: scopes p_scopes (broadest first) with caps p_caps and shard counts
-- p_shards. Returns the 1-based index of the first scope whose cap is reached, or 0 after
-- counting the send in every scope (p_count false: the same locks and counting, nothing
-- recorded: a decoy). Scopes are locked in sorted order, so there is no lock order to get wrong.
CREATE FUNCTION authsvc_sms_take(p_scopes text[], p_caps integer[], p_shards integer[], p_count boolean)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    n integer := coalesce(array_length(p_scopes, 1), 0);
    mine integer[] := array_fill(0, ARRAY[greatest(n, 1)]);
    capped integer := n + 1;  -- the broadest scope (lowest index) whose cap is reached
    i integer;
    k integer;
    s integer;
    used integer;
    start integer;
    attempt integer;
BEGIN
    FOR i IN SELECT o FROM generate_series(1, n) AS o ORDER BY p_scopes[o] LOOP
        k := greatest(p_shards[i], 1);
        IF k = 1 THEN
            PERFORM authsvc_sms_lock(p_scopes[i], 0);
            mine[i] := 0;
            IF authsvc_sms_used(p_scopes[i]) >= p_caps[i] THEN
                capped := least(capped, i);
            END IF;
            CONTINUE;
        END IF;
        BEGIN  -- the fast path, in a savepoint so that its shard can be given back
            start := floor(random() * k)::integer;
            FOR attempt IN 1 .. 2 LOOP
                SELECT shard INTO s FROM sms_cap_scopes WHERE scope = p_scopes[i] AND shard < k
                 ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED;
                EXIT WHEN FOUND OR attempt = 2;
                -- none free: on a scope's first use its rows are made (waiting only for
                -- another decision making them too), then tried once more
                INSERT INTO sms_cap_scopes (scope, shard, last_used)
                SELECT p_scopes[i], g, now() FROM generate_series(0, k - 1) AS g ON CONFLICT DO NOTHING;
            END LOOP;
            IF s IS NULL THEN  -- every shard is taken: wait for one
                s := start;
                PERFORM authsvc_sms_lock(p_scopes[i], start);
            END IF;
            mine[i] := s;
            UPDATE sms_cap_scopes SET last_used = now()
             WHERE scope = p_scopes[i] AND shard = s AND last_used < now() - interval '10 minutes';
            used := authsvc_sms_used(p_scopes[i]);
            IF used >= p_caps[i] THEN
                capped := least(capped, i);
            ELSIF used + k > p_caps[i] THEN
                RAISE EXCEPTION USING ERRCODE = 'AS001';  -- close to the cap: give the shard back
            END IF;
        EXCEPTION WHEN SQLSTATE 'AS001' THEN
            FOR s IN 0 .. k - 1 LOOP  -- exact: every shard, in order
                PERFORM authsvc_sms_lock(p_scopes[i], s);
            END LOOP;
            mine[i] := start;
            IF authsvc_sms_used(p_scopes[i]) >= p_caps[i] THEN
                capped := least(capped, i);
            END IF;
        END;
    END LOOP;
    -- stale rows, a bounded number now and then; after this decision's own locks and skipping
    -- rows others hold, so a prune never waits while holding a lock out of order
    IF random() < 0.1 THEN
        DELETE FROM sms_cap_counts WHERE (scope, shard, minute) IN (
            SELECT scope, shard, minute FROM sms_cap_counts WHERE minute < now() - interval '2 hours'
             LIMIT 100 FOR UPDATE SKIP LOCKED);
        DELETE FROM sms_cap_scopes WHERE (scope, shard) IN (
            SELECT scope, shard FROM sms_cap_scopes WHERE last_used < now() - interval '2 hours'
             LIMIT 100 FOR UPDATE SKIP LOCKED);
        DELETE FROM sms_sends WHERE id IN (  -- kept a day for investigations
            SELECT id FROM sms_sends WHERE created_at < now() - interval '1 day'
             ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED);
    END IF;
    IF capped <= n THEN
        RETURN capped;
    END IF;
    IF p_count THEN
        INSERT INTO sms_cap_counts AS c (scope, shard, minute, sent)
        SELECT p_scopes[o], mine[o], date_trunc('minute', now()), 1 FROM generate_series(1, n) AS o
        ON CONFLICT (scope, shard, minute) DO UPDATE SET sent = c.sent + 1;
    END IF;
    RETURN 0;
END
$$;
