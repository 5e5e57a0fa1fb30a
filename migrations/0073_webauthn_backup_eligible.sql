-- Whether a WebAuthn credential can be synced (the authenticator data's BE flag at
-- registration). NULL for credentials registered before this column: their next assertion
-- tells (BE and BS are in every assertion). A backup-eligible or backed-up credential is a
-- syncable authenticator: AAL2, never AAL3 (NIST SP 800-63B rev. 4).
ALTER TABLE factors ADD COLUMN backup_eligible boolean;
