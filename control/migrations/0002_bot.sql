-- The bot's durable state beside the requests.

-- Where a request's root message is, and what it shows. The card is the platform-independent
-- root message (countersign_control::chat::RequestCard) as last rendered; card_final is set once
-- the card shows a state nothing will change, so the card follower only looks at live cards.
ALTER TABLE cs_requests
    ADD COLUMN root_platform    text,
    ADD COLUMN root_channel     text,
    ADD COLUMN root_ts          text,
    ADD COLUMN root_claimed_at  timestamptz,
    ADD COLUMN card             jsonb,
    ADD COLUMN card_shown       text,
    ADD COLUMN card_final       boolean NOT NULL DEFAULT false,
    ADD COLUMN origin           jsonb;
CREATE UNIQUE INDEX cs_requests_root ON cs_requests (root_platform, root_channel, root_ts)
    WHERE root_ts IS NOT NULL;
CREATE INDEX cs_requests_live_cards ON cs_requests (updated_at)
    WHERE root_ts IS NOT NULL AND NOT card_final;
-- Root messages being posted right now: a reaction may arrive before the root is recorded.
CREATE INDEX cs_requests_roots_in_flight ON cs_requests (root_claimed_at) WHERE root_ts IS NULL;
CREATE INDEX cs_requests_requester ON cs_requests (requester, state);

-- Every chat event and command the bot accepted, stored before it is acknowledged: a replica
-- that dies mid-way leaves the row unfinished and another replica finishes it; a second
-- delivery of the same event (a retry, a second replica, a replayed request) finds the key and
-- does nothing.
CREATE TABLE cs_inbox (
    key          text PRIMARY KEY,
    kind         text NOT NULL,
    payload      jsonb NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 1,
    done_at      timestamptz
);
CREATE INDEX cs_inbox_unfinished ON cs_inbox (claimed_at) WHERE done_at IS NULL;
