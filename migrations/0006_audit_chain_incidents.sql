-- A hash chain over the audit log (so `authsvc audit verify` detects edited or deleted
-- rows), and resumable incident runs.

ALTER TABLE audit_log
    ADD COLUMN prev_hash bytea,
    ADD COLUMN hash      bytea;

CREATE TABLE incidents (
    id           uuid PRIMARY KEY,
    kind         text NOT NULL,
    reason       text NOT NULL,
    operator     text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    cursor       uuid,
    done_count   integer NOT NULL DEFAULT 0,
    finished_at  timestamptz
);
