-- Reserved for the back-fill jobs table (branch wip/bfsvc ships the real 0002). This placeholder only keeps
-- the versions contiguous on the HA branch; the lead drops it when merging the real one.
SELECT 1;
