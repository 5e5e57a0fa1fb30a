-- SMS policy (services/sms_policy.py): every SMS sent on behalf of a request is recorded, so the
-- hourly caps per number, account, client, network, destination country and in total can be
-- counted race-free in one place (under one advisory lock, in the sender's transaction).
CREATE TABLE sms_sends (
    id           bigserial PRIMARY KEY,
    created_at   timestamptz NOT NULL DEFAULT now(),
    purpose      text NOT NULL,
    phone        text NOT NULL,
    country      text NOT NULL,
    account_id   uuid,
    client_key   text,
    network_key  text
);
CREATE INDEX sms_sends_created ON sms_sends (created_at);
CREATE INDEX sms_sends_phone ON sms_sends (phone, created_at);
CREATE INDEX sms_sends_account ON sms_sends (account_id, created_at) WHERE account_id IS NOT NULL;
CREATE INDEX sms_sends_client ON sms_sends (client_key, created_at) WHERE client_key IS NOT NULL;
CREATE INDEX sms_sends_network ON sms_sends (network_key, created_at) WHERE network_key IS NOT NULL;
CREATE INDEX sms_sends_country ON sms_sends (country, created_at);

-- When each cap last raised the sms.cap_reached webhook (at most once an hour per cap).
CREATE TABLE sms_cap_alerts (
    cap       text PRIMARY KEY,
    fired_at  timestamptz NOT NULL
);

-- Twilio Lookup answers (line type), kept so a number is looked up (and paid for) once a month.
CREATE TABLE phone_line_types (
    phone       text PRIMARY KEY,
    line_type   text NOT NULL,
    checked_at  timestamptz NOT NULL DEFAULT now()
);

-- A registration with a taken email notifies the owner of the email at most once a day.
ALTER TABLE registrations ADD COLUMN owner_notified boolean NOT NULL DEFAULT false;
CREATE INDEX registrations_owner_notified ON registrations (email_normalized, created_at) WHERE owner_notified;
