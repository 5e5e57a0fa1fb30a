-- Payment exemptions (services/flows/exemptions.py) and trusted payees.

-- name: exemption_context
-- What suspends exemptions for this session: its device unknown or known for less than the
-- cooldown, a recent password reset, a freeze (now or within the cooldown), the factor lock.
SELECT a.status = 'frozen'
       OR EXISTS (SELECT 1 FROM audit_log l
                   WHERE l.account_id = a.id AND l.action IN ('account.frozen', 'account.unfrozen')
                     AND l.at > now() - make_interval(secs => %(cooldown)s)) AS frozen,
       COALESCE(a.locked_until > now(), false) AS locked,
       (d.id IS NULL OR d.created_at > now() - make_interval(secs => %(cooldown)s)) AS new_device,
       EXISTS (SELECT 1 FROM password_resets r
                WHERE r.account_id = a.id
                  AND r.completed_at > now() - make_interval(secs => %(cooldown)s)) AS password_reset
  FROM accounts a
  JOIN sessions s ON s.account_id = a.id AND s.id = %(session_id)s
  LEFT JOIN device_tokens d ON d.id = s.device_token_id AND d.account_id = a.id
                           AND d.revoked_at IS NULL AND d.expires_at > now()
 WHERE a.id = %(account_id)s;

-- name: ensure_exemption_counter
INSERT INTO payment_exemption_counters (account_id, currency) VALUES (%(account_id)s, %(currency)s)
ON CONFLICT (account_id, currency) DO NOTHING;

-- name: take_low_value_exemption
-- Exactly once: a racing payment waits for the row and re-checks the caps on the winner's row.
UPDATE payment_exemption_counters
   SET cumulative = cumulative + %(amount)s, count = count + 1
 WHERE account_id = %(account_id)s AND currency = %(currency)s
   AND cumulative + %(amount)s <= %(max_cumulative)s AND count + 1 <= %(max_count)s
RETURNING cumulative, count;

-- name: reset_exemption_counters
UPDATE payment_exemption_counters SET cumulative = 0, count = 0, since = now()
 WHERE account_id = %(account_id)s AND (cumulative <> 0 OR count <> 0);

-- name: take_recurring_exemption
UPDATE recurring_series SET last_exempt_at = now()
 WHERE account_id = %(account_id)s AND transaction_hash = %(transaction_hash)s
   AND COALESCE(last_exempt_at, started_at) <= now() - make_interval(secs => %(interval)s)
RETURNING id;

-- name: start_recurring_series
INSERT INTO recurring_series (id, account_id, transaction_hash, transaction)
VALUES (%(id)s, %(account_id)s, %(transaction_hash)s, %(transaction)s)
ON CONFLICT (account_id, transaction_hash)
DO UPDATE SET started_at = now(), last_exempt_at = NULL
RETURNING id;

-- name: trusted_payee
SELECT 1 AS trusted FROM trusted_payees WHERE account_id = %(account_id)s AND payee = %(payee)s;

-- name: trusted_payees_of_account
SELECT payee, created_at FROM trusted_payees WHERE account_id = %(account_id)s ORDER BY created_at, payee;

-- name: trusted_payee_count
SELECT count(*) FROM trusted_payees WHERE account_id = %(account_id)s;

-- name: insert_trusted_payee
INSERT INTO trusted_payees (account_id, payee) VALUES (%(account_id)s, %(payee)s)
ON CONFLICT (account_id, payee) DO NOTHING
RETURNING created_at;

-- name: delete_trusted_payee
DELETE FROM trusted_payees WHERE account_id = %(account_id)s AND payee = %(payee)s RETURNING payee;

-- name: insert_exempt_step_up_token
INSERT INTO step_up_tokens (id, token_hash, challenge_id, account_id, session_id, action, transaction,
                            transaction_hash, acr, amr, exemption, expires_at)
VALUES (%(id)s, %(token_hash)s, NULL, %(account_id)s, %(session_id)s, 'payment.authorize',
        %(transaction)s, %(transaction_hash)s, %(acr)s, '{}', %(exemption)s,
        now() + make_interval(secs => %(ttl)s));
