-- Anonymous reset requests are counted per client (IPv4 address or IPv6 /64) as well as per
-- account: strangers on one network cannot use up the reset SMS of an owner who has lost
-- their known device (services/password_reset.py).
ALTER TABLE password_resets ADD COLUMN client_key text;
