-- storemon schema, version 12 (numbered after its issue, so it cannot collide with a
-- migration written alongside it): the latest cut ever applied to the stored history.
-- The supported range of report times is derived from the reach setting; this row keeps
-- it honest when the reach was once smaller than it is now (the rows that smaller reach
-- pruned do not come back), see storemon.aggregates.reach.
CREATE TABLE retention_mark (
    only_row          boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    pruned_before_us  bigint  NOT NULL
);

-- The exact sums behind a report's CSV (up and down microseconds of the hour, day and week
-- windows, six int64 per row in the CSV's order, native byte order of the writer is not
-- assumed: little-endian) and a digest of the schedules and zones it was computed with.
-- The JSON and Parquet formats add business and unobserved time from them when rendered,
-- and leave them out if a schedule changed since (the digest differs).
ALTER TABLE reports ADD COLUMN window_us bytea, ADD COLUMN schedules_digest bigint;
