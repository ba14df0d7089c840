-- Hot standby paths ([ha] standby = true): what each standby instance verifiably received. One row per
-- stretch in which all of a standby's paths were live: from `since` to `seen` (its paths' last frame read),
-- for `topics`. A takeover takes these off the gap it would report (gcbridge.core.standby_cover), so an
-- interval that a standby delivered is not a gap. Times are the DATABASE clock, like the lease tables.
CREATE TABLE standby_coverage (
    instance   text             NOT NULL,
    stretch    double precision NOT NULL,  -- `since` on the standby's own clock: names the stretch
    since      double precision NOT NULL,
    seen       double precision NOT NULL,
    topics     text[]           NOT NULL,
    updated_at double precision NOT NULL,
    PRIMARY KEY (instance, stretch)
);
CREATE INDEX standby_coverage_seen ON standby_coverage (seen);
