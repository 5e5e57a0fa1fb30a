-- Wrong second-factor answers from known devices are limited per device token (login) and per
-- session (step-up), not per account: a stolen device token cannot guess TOTP codes without
-- bound, and a stolen session's wrong answers cannot pause the owner's other sessions
-- (services/second_factor.py). No foreign keys: a failure row outlives nothing it names for
-- longer than its 15-minute window matters.
ALTER TABLE factor_failures
    ADD COLUMN device_token_id uuid,
    ADD COLUMN session_id      uuid;

CREATE INDEX factor_failures_device_at ON factor_failures (device_token_id, at)
    WHERE device_token_id IS NOT NULL AND session_id IS NULL;
CREATE INDEX factor_failures_session_at ON factor_failures (session_id, at) WHERE session_id IS NOT NULL;
