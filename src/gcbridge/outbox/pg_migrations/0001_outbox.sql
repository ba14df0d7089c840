-- The outbox table: the same columns and states as the SQLite store (0 pending, 1 in flight, 2 delivered,
-- 3 dead). Times are UNIX seconds (double precision), passed in by the caller like in SQLite.
CREATE TABLE outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- never reused after purges
    dedup_key        text             NOT NULL UNIQUE,
    order_key        text             NOT NULL,
    topic            text             NOT NULL,
    payload          bytea            NOT NULL,
    received_at      double precision NOT NULL,
    state            smallint         NOT NULL DEFAULT 0 CHECK (state BETWEEN 0 AND 3),
    attempts         integer          NOT NULL DEFAULT 0,
    next_attempt_at  double precision NOT NULL DEFAULT 0,
    last_error       text,
    lease_owner      text,
    lease_expires_at double precision,
    finished_at      double precision,
    detail           text
);

-- The per-key rule in the database itself: at most one row of an order key in flight, whichever process
-- claimed it. A claim that would break it fails with a unique violation instead of delivering out of order.
CREATE UNIQUE INDEX outbox_one_in_flight_per_key ON outbox (order_key) WHERE state = 1;

-- Undelivered rows by key and id: "is this row its key's head" and "is the key busy" are index probes.
CREATE INDEX outbox_undelivered_by_key ON outbox (order_key, id) WHERE state IN (0, 1);

-- Pending rows by due time: the claim scan and next_due.
CREATE INDEX outbox_pending_due ON outbox (next_attempt_at, id) WHERE state = 0;

-- In-flight rows by lease end: reclaiming expired leases.
CREATE INDEX outbox_lease ON outbox (lease_expires_at) WHERE state = 1;

-- Finished rows: retention (delivered) and the dead-letter list (dead).
CREATE INDEX outbox_finished ON outbox (state, finished_at) WHERE state IN (2, 3);
