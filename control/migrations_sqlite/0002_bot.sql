-- The bot's durable state beside the requests (SQLite; see migrations/0002_bot.sql).
-- SQLite adds one column per ALTER TABLE.

ALTER TABLE cs_requests ADD COLUMN root_platform TEXT;
ALTER TABLE cs_requests ADD COLUMN root_channel TEXT;
ALTER TABLE cs_requests ADD COLUMN root_ts TEXT;
ALTER TABLE cs_requests ADD COLUMN root_claimed_at INTEGER;
ALTER TABLE cs_requests ADD COLUMN card TEXT;
ALTER TABLE cs_requests ADD COLUMN card_shown TEXT;
ALTER TABLE cs_requests ADD COLUMN card_final INTEGER NOT NULL DEFAULT 0 CHECK (card_final IN (0, 1));
ALTER TABLE cs_requests ADD COLUMN origin TEXT;
CREATE UNIQUE INDEX cs_requests_root ON cs_requests (root_platform, root_channel, root_ts)
    WHERE root_ts IS NOT NULL;
CREATE INDEX cs_requests_live_cards ON cs_requests (updated_at)
    WHERE root_ts IS NOT NULL AND NOT card_final;
-- Root messages being posted right now: a reaction may arrive before the root is recorded.
CREATE INDEX cs_requests_roots_in_flight ON cs_requests (root_claimed_at) WHERE root_ts IS NULL;
CREATE INDEX cs_requests_requester ON cs_requests (requester, state);

-- Every chat event and command the bot accepted, stored before it is acknowledged.
CREATE TABLE cs_inbox (
    key          TEXT PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL,
    payload      TEXT NOT NULL,
    received_at  INTEGER NOT NULL DEFAULT (CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)),
    claimed_at   INTEGER NOT NULL DEFAULT (CAST(round((julianday('now') - 2440587.5) * 86400000.0) AS INTEGER)),
    attempts     INTEGER NOT NULL DEFAULT 1,
    done_at      INTEGER
);
CREATE INDEX cs_inbox_unfinished ON cs_inbox (claimed_at) WHERE done_at IS NULL;
