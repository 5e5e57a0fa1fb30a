-- An outbox row may carry a bundle of messages, so that a request writes the same number of
-- rows whichever messages it sends (no timing difference between registered and unknown emails).
ALTER TABLE outbox DROP CONSTRAINT outbox_kind_check;
ALTER TABLE outbox ADD CONSTRAINT outbox_kind_check CHECK (kind IN ('sms', 'email', 'webhook', 'bundle'));
