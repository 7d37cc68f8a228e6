-- The deduplication claims, the status events (the Laufzettel) and the HTTP submission
-- claims: ids, codes, agencies, times and SHA-256 digests, never a payload.

CREATE TABLE dedup_claims (
    author        text NOT NULL,
    uuid          text NOT NULL,
    digest        text NOT NULL,
    first_seen    double precision NOT NULL,  -- seconds since the epoch, as the SQLite store
    completed     boolean NOT NULL DEFAULT false,
    -- The session of the broker process delivering it (broker.stores.postgres.database,
    -- Presence); NULL once completed or given up.
    holder_pid    integer,
    holder_start  timestamptz,
    PRIMARY KEY (author, uuid)
);
CREATE INDEX dedup_claims_first_seen ON dedup_claims (first_seen);

CREATE TABLE status_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uuid            text NOT NULL,
    kind            text NOT NULL,
    at              timestamptz NOT NULL,
    author          text,
    agency          text,
    nachrichtentyp  text,
    standard        text,
    digest          text,
    reason          text,
    recipients      text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX status_events_uuid ON status_events (uuid, at, id);
CREATE INDEX status_events_at ON status_events (at);
-- The waiting watch reads queued copies by age, then looks for their outcome.
CREATE INDEX status_events_queued ON status_events (at) WHERE kind = 'queued';
CREATE INDEX status_events_outcome ON status_events (uuid, agency)
    WHERE kind IN ('delivered', 'failed');

-- An HTTP submission claim is its author's own (broker/stores/status.py).
CREATE TABLE submissions (
    author  text NOT NULL,
    uuid    text NOT NULL,
    digest  text NOT NULL,
    at      timestamptz NOT NULL,
    PRIMARY KEY (author, uuid)
);
CREATE INDEX submissions_at ON submissions (at);
