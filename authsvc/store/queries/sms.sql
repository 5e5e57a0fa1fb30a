-- Named queries of the SMS policy (services/core/sms_policy.py).

-- name: sms_take
-- One SMS decision in one statement (migrations 0071, 0091): locks the caps' scope rows (a
-- free shard of a broad scope), counts their last hour, and unless a cap is reached counts the send and records it in sms_sends. Returns
-- the 1-based index (in the given order) of the first cap reached, else 0. With count false: the
-- same locks and counting, nothing recorded (a decoy).
WITH d AS MATERIALIZED (SELECT authsvc_sms_take(%(scopes)s::text[], %(caps)s::integer[], %(shards)s::integer[],
                                                  %(count)s) AS capped),
     rec AS (INSERT INTO sms_sends (purpose, phone, country, account_id, client_key, network_key)
             SELECT %(purpose)s, %(phone)s, %(country)s, %(account_id)s, %(client_key)s, %(network_key)s
               FROM d WHERE d.capped = 0 AND %(count)s)
SELECT capped FROM d;

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
