-- Countersign control plane on SQLite (for `countersign dev`): the tables, constraints and
-- indexes of migrations/0001_control_plane.sql. Differences, each forced by SQLite:
-- - times are INTEGER milliseconds since the Unix epoch (timestamptz there), set by the
--   statements from the view cs_now;
-- - JSON is TEXT (jsonb there), booleans are INTEGER 0/1;
-- - the PL/pgSQL functions (sealing the audit chain, finishing a job, marking a publication)
--   are Rust code in countersign_control running in `BEGIN IMMEDIATE` transactions;
-- - TRUNCATE does not exist; the triggers refuse UPDATE and DELETE with the same messages.

-- Now, in milliseconds since the Unix epoch (stable within one statement).
CREATE VIEW cs_now AS
SELECT CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER) AS ms;

CREATE TABLE cs_requests (
    id              TEXT PRIMARY KEY NOT NULL,
    created_at      INTEGER NOT NULL DEFAULT (CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)),
    updated_at      INTEGER NOT NULL DEFAULT (CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)),
    requester       TEXT NOT NULL,
    target          TEXT NOT NULL,
    sql             TEXT NOT NULL,
    sql_sha256      TEXT NOT NULL,
    reason          TEXT,
    state           TEXT NOT NULL,
    category        TEXT,
    policy_version  TEXT,
    decision        TEXT,
    expires_at      INTEGER,
    reply_to        TEXT,
    root_message    TEXT
);
CREATE INDEX cs_requests_open ON cs_requests (state, expires_at) WHERE state = 'pending';

CREATE TABLE cs_approvals (
    request_id    TEXT NOT NULL REFERENCES cs_requests (id),
    approver      TEXT NOT NULL,
    approved_at   INTEGER NOT NULL DEFAULT (CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)),
    withdrawn_at  INTEGER,
    PRIMARY KEY (request_id, approver)
);

-- The outbox: one signed job per request. Redis only carries it; this row is the truth.
CREATE TABLE cs_jobs (
    request_id    TEXT PRIMARY KEY NOT NULL,
    target        TEXT NOT NULL,
    payload       TEXT NOT NULL,
    signature     TEXT NOT NULL,
    category      TEXT NOT NULL,
    state         TEXT NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'rolled_back', 'refused', 'unknown')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    reply_to      TEXT,
    created_at    INTEGER NOT NULL DEFAULT (CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)),
    claimed_by    TEXT,
    claimed_at    INTEGER,
    lease_until   INTEGER,
    finished_at   INTEGER,
    summary       TEXT,
    posted_at     INTEGER
);
CREATE INDEX cs_jobs_open ON cs_jobs (target, state) WHERE state IN ('queued', 'running');

-- Where each job went out on Redis, so the reconciler can tell a lost message from a slow one.
CREATE TABLE cs_job_publications (
    request_id    TEXT PRIMARY KEY NOT NULL,
    stream_entry  TEXT NOT NULL,
    published_at  INTEGER NOT NULL DEFAULT (CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER))
);
CREATE INDEX cs_jobs_unposted ON cs_jobs (finished_at) WHERE posted_at IS NULL AND finished_at IS NOT NULL;

-- Audit entries written inside the transaction of the transition they record, then sealed
-- into the hash chain (cs_audit). AUTOINCREMENT: an id is never reused after its row is sealed
-- and deleted (cs_audit.event_id is unique).
CREATE TABLE cs_audit_queue (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id  TEXT NOT NULL,
    entry       TEXT NOT NULL
);

CREATE TABLE cs_audit (
    seq         INTEGER PRIMARY KEY,
    event_id    INTEGER NOT NULL UNIQUE,
    request_id  TEXT NOT NULL,
    content     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX cs_audit_request ON cs_audit (request_id);

CREATE TABLE cs_audit_head (
    only_row  INTEGER PRIMARY KEY NOT NULL DEFAULT 1 CHECK (only_row = 1),
    seq       INTEGER NOT NULL,
    hash      TEXT NOT NULL
);
INSERT INTO cs_audit_head (seq, hash)
VALUES (0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TRIGGER cs_audit_no_update BEFORE UPDATE ON cs_audit
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only: UPDATE on cs_audit is refused');
END;
CREATE TRIGGER cs_audit_no_delete BEFORE DELETE ON cs_audit
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only: DELETE on cs_audit is refused');
END;

-- The head only moves forward, one sealed batch at a time.
CREATE TRIGGER cs_audit_head_forward BEFORE UPDATE ON cs_audit_head
WHEN NEW.seq <= OLD.seq
BEGIN
    SELECT RAISE(ABORT, 'the audit head only moves forward');
END;
CREATE TRIGGER cs_audit_head_no_delete BEFORE DELETE ON cs_audit_head
BEGIN
    SELECT RAISE(ABORT, 'the audit head only moves forward');
END;
