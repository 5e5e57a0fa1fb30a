-- The transactional outbox: messages and webhooks written with the change that causes them
-- (store/outbox.py runs these).

-- ---------------------------------------------------------------- outbox
-- name: outbox_insert
INSERT INTO outbox (kind, payload) VALUES (%(kind)s, %(payload)s) RETURNING id;

-- name: outbox_lease
-- One row, leased to one sender (its token) right before it is sent.
UPDATE outbox SET attempts = attempts + 1,
                  lease_token = %(token)s,
                  available_at = now() + make_interval(secs => %(lease_seconds)s)
 WHERE id = (SELECT id FROM outbox
              WHERE delivered_at IS NULL AND failed_at IS NULL AND available_at <= now()
              ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, kind, payload, attempts;

-- name: outbox_delivered
UPDATE outbox SET delivered_at = now(), payload = '', last_error = NULL, lease_token = NULL
 WHERE id = %(id)s AND delivered_at IS NULL;

-- name: outbox_retry_later
UPDATE outbox SET available_at = now() + make_interval(secs => %(delay)s),
                  last_error = %(error)s,
                  lease_token = NULL,
                  failed_at = CASE WHEN attempts >= %(max_attempts)s THEN now() END
 WHERE id = %(id)s AND lease_token = %(token)s AND delivered_at IS NULL;

-- name: outbox_depth
SELECT count(*) FILTER (WHERE failed_at IS NULL) AS pending,
       count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed
  FROM outbox WHERE delivered_at IS NULL;

-- name: outbox_requeue_failed
UPDATE outbox SET failed_at = NULL, attempts = 0, available_at = now()
 WHERE delivered_at IS NULL AND failed_at IS NOT NULL
RETURNING id;


-- name: outbox_recent_errors
-- Undelivered messages whose last attempt failed (operators' `outbox status`), newest first.
SELECT id, kind, attempts, available_at, failed_at, last_error
  FROM outbox
 WHERE delivered_at IS NULL AND last_error IS NOT NULL
 ORDER BY id DESC
 LIMIT %(limit)s;

-- name: outbox_progress
-- A bundle keeps only the messages still to send; the lease is renewed if still ours.
UPDATE outbox SET payload = %(payload)s,
                  available_at = now() + make_interval(secs => %(lease_seconds)s)
 WHERE id = %(id)s AND lease_token = %(token)s AND delivered_at IS NULL AND failed_at IS NULL
RETURNING id;
