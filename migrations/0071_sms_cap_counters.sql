-- SMS caps without a global advisory lock (services/sms_policy.py, issue 17).
--
-- Each cap scope ('total', 'country:JP', 'number:+81...', ...) has one row in sms_cap_scopes,
-- locked (FOR UPDATE, in scope order) by the decision, and a counter per minute in
-- sms_cap_counts. A decision sums at most 61 counter rows of each scope (an index range), so it
-- costs the same however many SMS the hour holds, and two decisions wait for each other only
-- when they share a scope, until the first one commits. 'total' is shared by every decision:
-- the global cap serialises decisions from the lock to COMMIT (one statement and the commit),
-- not for the counting of the whole hour as the advisory lock did.
--
-- A send is counted in the minute it happens and for the 60 whole minutes after it, so every
-- window of an hour holds at most the cap (a send may count up to a minute longer than an hour).

CREATE TABLE sms_cap_scopes (
    scope      text PRIMARY KEY,
    last_used  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sms_cap_scopes_last_used ON sms_cap_scopes (last_used);

CREATE TABLE sms_cap_counts (
    scope   text NOT NULL,
    minute  timestamptz NOT NULL,
    sent    integer NOT NULL,
    PRIMARY KEY (scope, minute)
);
CREATE INDEX sms_cap_counts_minute ON sms_cap_counts (minute);

-- The sends of the last hour recorded so far (sms_sends, kept a day for investigations) become
-- counters, so the caps hold across the upgrade.
INSERT INTO sms_cap_counts (scope, minute, sent)
SELECT scope, minute, count(*)
  FROM (SELECT date_trunc('minute', created_at) AS minute, created_at,
               unnest(ARRAY['total:*', 'country:' || country, 'number:' || phone,
                            'account:' || account_id::text, 'client:' || client_key,
                            'network:' || network_key]) AS scope
          FROM sms_sends WHERE created_at > now() - interval '61 minutes') s
 WHERE scope IS NOT NULL
 GROUP BY scope, minute;
INSERT INTO sms_cap_scopes (scope) SELECT DISTINCT scope FROM sms_cap_counts;

-- One SMS decision: p_scopes with their caps p_caps, broadest first. Locks the scopes' rows
-- (created on first use) in sorted order (no lock order to get wrong), then returns the 1-based
-- index of the first scope whose last hour already holds its cap, or 0 after counting the send in
-- every scope. With p_count false it locks and counts the same but records nothing (a decoy with
-- the same cost).
CREATE FUNCTION authsvc_sms_take(p_scopes text[], p_caps integer[], p_count boolean)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    this_minute timestamptz := date_trunc('minute', now());
    used integer;
    i integer;
    s text;
BEGIN
    FOR s IN SELECT DISTINCT x FROM unnest(p_scopes) AS x ORDER BY x LOOP
        LOOP  -- again if a prune removed the row between the two statements
            INSERT INTO sms_cap_scopes (scope, last_used) VALUES (s, now()) ON CONFLICT (scope) DO NOTHING;
            PERFORM 1 FROM sms_cap_scopes WHERE scope = s FOR UPDATE;
            EXIT WHEN FOUND;
        END LOOP;
        -- refreshed at most every 10 minutes (the prune keeps rows used within 2 hours)
        UPDATE sms_cap_scopes SET last_used = now()
         WHERE scope = s AND last_used < now() - interval '10 minutes';
    END LOOP;
    -- stale rows, a bounded number now and then; after this decision's own locks and skipping
    -- rows others hold, so a prune never waits while holding a lock out of order
    IF random() < 0.1 THEN
        DELETE FROM sms_cap_counts WHERE (scope, minute) IN (
            SELECT scope, minute FROM sms_cap_counts WHERE minute < this_minute - interval '2 hours'
             LIMIT 100 FOR UPDATE SKIP LOCKED);
        DELETE FROM sms_cap_scopes WHERE scope IN (
            SELECT scope FROM sms_cap_scopes WHERE last_used < now() - interval '2 hours'
             LIMIT 100 FOR UPDATE SKIP LOCKED);
        DELETE FROM sms_sends WHERE id IN (  -- kept a day for investigations
            SELECT id FROM sms_sends WHERE created_at < now() - interval '1 day'
             ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED);
    END IF;
    FOR i IN 1 .. coalesce(array_length(p_scopes, 1), 0) LOOP
        SELECT coalesce(sum(sent), 0) INTO used FROM sms_cap_counts
         WHERE scope = p_scopes[i] AND minute >= this_minute - interval '60 minutes';
        IF used >= p_caps[i] THEN
            RETURN i;
        END IF;
    END LOOP;
    IF p_count THEN
        INSERT INTO sms_cap_counts AS c (scope, minute, sent)
        SELECT DISTINCT unnest(p_scopes), this_minute, 1
        ON CONFLICT (scope, minute) DO UPDATE SET sent = c.sent + 1;
    END IF;
    RETURN 0;
END
$$;
