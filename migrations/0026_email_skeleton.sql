-- Look-alike emails: besides the normalised email (NFKC, case-folded), the confusable
-- skeleton of it (Unicode TS #39: "alıce", "alіce" and "alİce" are all "alice") is unique, so
-- a look-alike of an existing address is taken like the address itself. Accounts made before
-- this migration get their skeleton from `authsvc db upgrade` (computed in Python from the
-- bundled confusables data); until then they are matched by their normalised email only.
ALTER TABLE accounts ADD COLUMN email_skeleton text;
CREATE UNIQUE INDEX accounts_email_skeleton_key ON accounts (email_skeleton);
