-- Countersign control plane: requests, approvals, the job outbox and the audit trail.

CREATE TABLE cs_requests (
    id              text PRIMARY KEY,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    requester       text NOT NULL,
    target          text NOT NULL,
    sql             text NOT NULL,
    sql_sha256      text NOT NULL,
    reason          text,
    state           text NOT NULL,
    category        text,
    policy_version  text,
    decision        jsonb,
    expires_at      timestamptz,
    reply_to        jsonb,
    root_message    jsonb
);
CREATE INDEX cs_requests_open ON cs_requests (state, expires_at) WHERE state = 'pending';

CREATE TABLE cs_approvals (
    request_id    text NOT NULL REFERENCES cs_requests (id),
    approver      text NOT NULL,
    approved_at   timestamptz NOT NULL DEFAULT now(),
    withdrawn_at  timestamptz,
    PRIMARY KEY (request_id, approver)
);

-- The outbox: one signed job per request. Redis only carries it; this row is the truth.
CREATE TABLE cs_jobs (
    request_id    text PRIMARY KEY,
    target        text NOT NULL,
    payload       text NOT NULL,
    signature     text NOT NULL,
    category      text NOT NULL,
    state         text NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'rolled_back', 'refused', 'unknown')),
    attempts      integer NOT NULL DEFAULT 0,
    reply_to      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    claimed_by    text,
    claimed_at    timestamptz,
    lease_until   timestamptz,
    finished_at   timestamptz,
    summary       jsonb,
    posted_at     timestamptz
);
CREATE INDEX cs_jobs_open ON cs_jobs (target, state) WHERE state IN ('queued', 'running');

-- Where each job went out on Redis, so the reconciler can tell a lost message from a slow one.
-- A table of its own: recording a publication never waits on (or holds up) a job's claim.
CREATE TABLE cs_job_publications (
    request_id    text PRIMARY KEY,
    stream_entry  text NOT NULL,
    published_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cs_jobs_unposted ON cs_jobs (finished_at) WHERE posted_at IS NULL AND finished_at IS NOT NULL;

-- Audit entries written inside the transaction of the transition they record, then sealed
-- into the hash chain (cs_audit) by whichever process gets the head's lock. `entry` is the
-- content text exactly as hashed (countersign_shared::audit::content_text).
CREATE TABLE cs_audit_queue (
    id          bigserial PRIMARY KEY,
    request_id  text NOT NULL,
    entry       text NOT NULL
);

CREATE TABLE cs_audit (
    seq         bigint PRIMARY KEY,
    event_id    bigint NOT NULL UNIQUE,
    request_id  text NOT NULL,
    content     text NOT NULL,
    prev_hash   text NOT NULL,
    hash        text NOT NULL
);
CREATE INDEX cs_audit_request ON cs_audit (request_id);

CREATE TABLE cs_audit_head (
    only_row  boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    seq       bigint NOT NULL,
    hash      text NOT NULL
);
INSERT INTO cs_audit_head (seq, hash)
VALUES (0, '0000000000000000000000000000000000000000000000000000000000000000');

-- A record's hash, as countersign_shared::audit::record_hash computes it.
CREATE FUNCTION cs_audit_hash(prev_hash text, seq bigint, content text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT encode(sha256(convert_to(
        'countersign-audit-v1' || chr(10) || prev_hash || chr(10) || seq::text || chr(10) || content,
        'UTF8')), 'hex')
$$;

-- Seals up to `batch` queued entries, oldest first, into the chain; returns what it sealed.
-- Takes the head's lock, so sealers take turns; the caller's transaction holds it to commit.
CREATE FUNCTION cs_audit_seal(batch integer)
RETURNS TABLE (event_id bigint, seq bigint, hash text)
LANGUAGE plpgsql AS $$
DECLARE
    head_seq  bigint;
    head_hash text;
    queued    record;
    taken     bigint[] := '{}';
BEGIN
    SELECT h.seq, h.hash INTO head_seq, head_hash FROM cs_audit_head h FOR UPDATE;
    FOR queued IN
        SELECT q.id, q.request_id, q.entry FROM cs_audit_queue q ORDER BY q.id LIMIT batch
    LOOP
        head_seq := head_seq + 1;
        event_id := queued.id;
        seq := head_seq;
        hash := cs_audit_hash(head_hash, head_seq, queued.entry);
        INSERT INTO cs_audit (seq, event_id, request_id, content, prev_hash, hash)
        VALUES (head_seq, queued.id, queued.request_id, queued.entry, head_hash, hash);
        head_hash := hash;
        taken := taken || queued.id;
        RETURN NEXT;
    END LOOP;
    IF array_length(taken, 1) > 0 THEN
        DELETE FROM cs_audit_queue q WHERE q.id = ANY (taken);
        UPDATE cs_audit_head SET seq = head_seq, hash = head_hash;
    END IF;
END;
$$;

-- Records that a job went out as Redis stream entry p_entry. Committed asynchronously: losing
-- this mark in a database crash only makes the reconciler publish the job again, and a job
-- delivered twice still runs once.
CREATE FUNCTION cs_mark_published(p_request_id text, p_entry text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    INSERT INTO cs_job_publications (request_id, stream_entry) VALUES (p_request_id, p_entry)
    ON CONFLICT (request_id) DO UPDATE SET stream_entry = EXCLUDED.stream_entry,
                                           published_at = now();
END;
$$;

-- Records a running job's outcome and its audit entry in one round trip, and seals the chain
-- up to that entry when no other transaction is sealing right now (then seq and hash are
-- returned). When another is, the entry stays queued for a batched seal (seq and hash are
-- NULL), so busy executors do not queue up one by one behind the head's lock. Returns no row
-- when the executor no longer held the job.
CREATE FUNCTION cs_job_finish(p_request_id text, p_executor text, p_state text,
                              p_summary jsonb, p_entry text)
RETURNS TABLE (event_id bigint, seq bigint, hash text)
LANGUAGE plpgsql AS $$
DECLARE
    mine bigint;
BEGIN
    UPDATE cs_jobs SET state = p_state, finished_at = now(), lease_until = NULL,
                       summary = p_summary
    WHERE request_id = p_request_id AND state = 'running' AND claimed_by = p_executor;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO cs_audit_queue (request_id, entry) VALUES (p_request_id, p_entry)
    RETURNING id INTO mine;
    PERFORM 1 FROM cs_audit_head FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        event_id := mine;
        seq := NULL;
        hash := NULL;
        RETURN NEXT;
        RETURN;
    END IF;
    -- Seal everything queued up to and including this entry (older entries keep their order).
    RETURN QUERY SELECT s.event_id, s.seq, s.hash FROM cs_audit_seal(1000000) s
                 WHERE s.event_id = mine;
END;
$$;

CREATE FUNCTION cs_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: % on cs_audit is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER cs_audit_no_update BEFORE UPDATE OR DELETE ON cs_audit
    FOR EACH ROW EXECUTE FUNCTION cs_audit_append_only();
CREATE TRIGGER cs_audit_no_truncate BEFORE TRUNCATE ON cs_audit
    FOR EACH STATEMENT EXECUTE FUNCTION cs_audit_append_only();

-- The head only moves forward, one sealed batch at a time.
CREATE FUNCTION cs_audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.seq <= OLD.seq THEN
        RAISE EXCEPTION 'the audit head only moves forward'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER cs_audit_head_forward BEFORE UPDATE OR DELETE ON cs_audit_head
    FOR EACH ROW EXECUTE FUNCTION cs_audit_head_forward();
