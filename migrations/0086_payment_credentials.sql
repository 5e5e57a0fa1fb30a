-- Secure Payment Confirmation (issue 22): WebAuthn credentials enrolled with the "payment"
-- extension can answer a payment.authorize step-up by the method "spc" (client data
-- "payment.get" showing the bound payee and total).
ALTER TABLE factors ADD COLUMN payment boolean NOT NULL DEFAULT false;

-- Registration challenges remember whether a payment credential was asked for.
ALTER TABLE webauthn_challenges ADD COLUMN payment boolean NOT NULL DEFAULT false;
