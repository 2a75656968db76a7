-- storemon schema, version 12 (numbered after its issue, so it cannot collide with a
-- migration written alongside it): the latest cut ever applied to the stored history.
-- The supported range of report times is derived from the reach setting; this row keeps
-- it honest when the reach was once smaller than it is now (the rows that smaller reach
-- pruned do not come back), see storemon.aggregates.reach.
CREATE TABLE retention_mark (
    only_row          boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    pruned_before_us  bigint  NOT NULL
);
