-- The gap journal's back-fill outcomes (the file journal's "backfill" lines): one row per attempt of a
-- back-fill job, beside the gaps of migration 0003. Times are UNIX seconds.
CREATE TABLE gap_backfills (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gap         jsonb            NOT NULL,  -- start, end, reason of the gap
    outcome     jsonb            NOT NULL,
    recorded_at double precision NOT NULL,
    recorded_by text
);
