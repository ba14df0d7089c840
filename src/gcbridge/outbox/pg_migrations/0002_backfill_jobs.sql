-- Back-fill jobs: one per gap (gap_key), beside the outbox they write into. Same columns and states as the
-- SQLite store's table (pending, running, done, partial, failed). Times are UNIX seconds.
CREATE TABLE backfill_jobs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gap_key     text             NOT NULL UNIQUE,
    gap_start   double precision NOT NULL,
    gap_end     double precision NOT NULL,
    topics      text             NOT NULL,  -- JSON list
    reason      text             NOT NULL,
    detail      text,
    state       text             NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'done', 'partial', 'failed')),
    attempts    integer          NOT NULL DEFAULT 0,
    next_at     double precision NOT NULL,
    outcome     text,                       -- JSON of the last attempt's outcome
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL,
    started_at  double precision,
    finished_at double precision
);

CREATE INDEX backfill_jobs_due ON backfill_jobs (next_at, id) WHERE state = 'pending';
