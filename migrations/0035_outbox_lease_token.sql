-- Each lease of an outbox row carries a token. A row is leased one at a time, right before it
-- is sent, and only the sender holding the current token may reschedule it; a sender that
-- outlived its lease (slow provider) no longer finds the row as it left it.
ALTER TABLE outbox ADD COLUMN lease_token uuid;
