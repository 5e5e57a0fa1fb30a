-- Named queries of the SMS policy (services/sms_policy.py).

-- name: sms_caps_lock
-- One lock for every cap: counting and recording a send must not race, and with a single lock
-- there is no lock order to get wrong. Held until the sender's transaction ends.
SELECT pg_advisory_xact_lock(hashtextextended('sms-caps', 0)) AS locked;

-- name: sms_sends_prune
-- Bounded, so no request pays for a large backlog; rows are kept a day for investigations.
DELETE FROM sms_sends
 WHERE id IN (SELECT id FROM sms_sends WHERE created_at < now() - interval '1 day' ORDER BY id LIMIT 100);

-- name: sms_sent_last_hour
-- Each count stops at its cap (all that matters is whether it is reached), so a busy hour costs
-- at most the caps' worth of index entries, however many SMS the hour already holds.
SELECT (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE created_at > now() - interval '1 hour'
                               LIMIT %(total_cap)s) t) AS total,
       (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE country = %(country)s
                                AND created_at > now() - interval '1 hour' LIMIT %(country_cap)s) t) AS country,
       (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE phone = %(phone)s
                                AND created_at > now() - interval '1 hour' LIMIT %(number_cap)s) t) AS number,
       (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE account_id = %(account_id)s
                                AND created_at > now() - interval '1 hour' LIMIT %(account_cap)s) t) AS account,
       (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE client_key = %(client_key)s
                                AND created_at > now() - interval '1 hour' LIMIT %(client_cap)s) t) AS client,
       (SELECT count(*) FROM (SELECT 1 FROM sms_sends WHERE network_key = %(network_key)s
                                AND created_at > now() - interval '1 hour' LIMIT %(network_cap)s) t) AS network;

-- name: insert_sms_send
INSERT INTO sms_sends (purpose, phone, country, account_id, client_key, network_key)
VALUES (%(purpose)s, %(phone)s, %(country)s, %(account_id)s, %(client_key)s, %(network_key)s);

-- name: sms_cap_alert_due
-- Returns a row when this cap has not alerted within the last hour (and records this alert).
INSERT INTO sms_cap_alerts (cap, fired_at) VALUES (%(cap)s, now())
ON CONFLICT (cap) DO UPDATE SET fired_at = now()
 WHERE sms_cap_alerts.fired_at <= now() - interval '1 hour'
RETURNING cap;

-- name: phone_line_type_cached
SELECT line_type FROM phone_line_types
 WHERE phone = %(phone)s AND checked_at > now() - interval '30 days';

-- name: remember_phone_line_type
INSERT INTO phone_line_types (phone, line_type, checked_at) VALUES (%(phone)s, %(line_type)s, now())
ON CONFLICT (phone) DO UPDATE SET line_type = EXCLUDED.line_type, checked_at = now();

-- name: registration_owner_notified_recently
-- Whether the owner of a taken email already had a "someone tried to register" notice today.
SELECT EXISTS (SELECT 1 FROM registrations
                WHERE email_normalized = %(email_normalized)s AND owner_notified
                  AND created_at > now() - interval '1 day') AS notified;
