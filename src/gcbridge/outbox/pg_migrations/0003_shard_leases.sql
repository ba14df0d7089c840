-- Several instances on one outbox (the [ha] section). Times are UNIX seconds from the DATABASE clock
-- (extract(epoch from clock_timestamp())), so that instances on machines with drifting clocks agree.

-- One row per shard of the configured topics. `epoch` increments on every change of owner; an ingest
-- transaction checks (owner, epoch, expires_at) of every shard it writes, in the same transaction (fencing).
CREATE TABLE shard_leases (
    shard         integer          PRIMARY KEY CHECK (shard >= 0),
    owner         text,
    epoch         bigint           NOT NULL DEFAULT 0,
    expires_at    double precision NOT NULL DEFAULT 0,
    -- the last moment an owner was known to receive this shard (renewals while its subscription is live);
    -- a takeover after it reports the gap from here to the moment the new owner is live
    covered_until double precision,
    handoff_to    text,            -- make-before-break: the instance asked to take the shard over
    handoff_at    double precision,
    changed_at    double precision NOT NULL DEFAULT 0,
    change_reason text                -- why the owner last changed: start, takeover, handoff, released
);

-- Every instance's heartbeat and what it uses: the channel budget of an OAuth client is shared by all
-- instances that run on it (Genesys allows 20 channels per client).
CREATE TABLE instances (
    id              text             PRIMARY KEY,
    client_id       text             NOT NULL,
    state           text             NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'leaving', 'stopped')),
    started_at      double precision NOT NULL,
    heartbeat_at    double precision NOT NULL,
    channel_budget  integer          NOT NULL,
    channels_in_use integer          NOT NULL DEFAULT 0,
    shards          integer          NOT NULL,  -- every instance must divide the topics into as many shards
    topics_digest   text,            -- differs only during a rolling change of the topic list
    host            text,
    pid             integer
);

-- The gap journal when the outbox is PostgreSQL (the file journal stays for SQLite).
CREATE TABLE gaps (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    start_at    double precision NOT NULL,
    end_at      double precision NOT NULL,
    seconds     double precision NOT NULL,
    reason      text             NOT NULL,
    topics      jsonb            NOT NULL,
    detail      text,
    recorded_at double precision NOT NULL,
    recorded_by text,
    shard       integer
);
CREATE INDEX gaps_recorded ON gaps (recorded_at);

-- The "alive" mark of the single-instance downtime gap (service_down / service_crashed), per journal name.
CREATE TABLE service_alive (
    name     text             PRIMARY KEY,
    alive_at double precision NOT NULL,
    clean    boolean          NOT NULL
);

-- Which instance wrote a row (fenced writes only): operators and tests can tell who ingested what.
ALTER TABLE outbox ADD COLUMN ingested_by text;
