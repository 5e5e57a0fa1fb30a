-- Language per account (and per pending registration, whose codes already go out in it), and
-- what a "this wasn't me" link is about, for the report page. The detail holds only what the
-- page shows: parsed browser and OS families and the IP, never a raw User-Agent.
ALTER TABLE accounts ADD COLUMN locale text NOT NULL DEFAULT 'en';
ALTER TABLE registrations ADD COLUMN locale text NOT NULL DEFAULT 'en';
ALTER TABLE report_tokens ADD COLUMN detail jsonb NOT NULL DEFAULT '{}'::jsonb;
