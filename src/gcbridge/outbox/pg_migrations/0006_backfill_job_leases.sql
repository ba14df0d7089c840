-- Back-fill jobs under several instances: the instance running a job (`owner`) holds it until `lease_until`
-- (the DATABASE clock, like shard leases) and renews it while the job runs. A running job is taken back only
-- when its owner's lease lapsed (the owner died or lost the database) or by its own owner at start, so a job
-- another live instance runs is never run twice. Rows from before this migration have no owner: they count
-- as lapsed.
ALTER TABLE backfill_jobs ADD COLUMN owner text;
ALTER TABLE backfill_jobs ADD COLUMN lease_until double precision;

CREATE INDEX backfill_jobs_running ON backfill_jobs (lease_until) WHERE state = 'running';
