-- storemon schema, version 2: one row per store and UTC day instead of one per hour (and
-- one per poll). A worker writes a store's day as one row, so the database takes one row
-- per store-day touched by a batch, not one per hour and poll: ingestion got several times
-- faster and the report reads fewer rows. The rows of version 1 are rebuilt by replaying
-- (the worker's Faust tables are not affected).

DROP TABLE hourly;
DROP TABLE daily;
DROP TABLE polls;

CREATE TABLE store_days (
    store_id        text     NOT NULL,
    day_start_us    bigint   NOT NULL,
    up_us           bigint   NOT NULL,   -- the day's totals
    down_us         bigint   NOT NULL,
    -- Running sums over the day's 24 hours, 25 entries starting at 0: hours a to b - 1
    -- (0-based) hold up_before[b + 1] - up_before[a + 1], a subtraction, not a scan.
    up_before_us    bigint[] NOT NULL,
    down_before_us  bigint[] NOT NULL,
    -- The day's status runs cut at hour boundaries, flat: [start_us, end_us, active(1/0),
    -- ...]; the runs of hour h are runs[run_bounds[h + 1] + 1 : run_bounds[h + 2]]
    -- (25 bounds), so a window that starts or ends inside an hour is clipped exactly.
    runs            bigint[] NOT NULL,
    run_bounds      integer[] NOT NULL,
    -- The day's polls (kept ones: a report before the newest poll looks up two of them).
    poll_ts_us      bigint[]  NOT NULL,
    poll_active     boolean[] NOT NULL,
    PRIMARY KEY (store_id, day_start_us)
);
CREATE INDEX store_days_by_day ON store_days (day_start_us);

-- A store-day is rewritten a few times while its polls arrive: leave room on each page for
-- the new version (an update that fits on its page needs no index change), and vacuum the
-- dead versions early, since reports scan the table.
ALTER TABLE store_days SET (fillfactor = 80, autovacuum_vacuum_scale_factor = 0.05);
