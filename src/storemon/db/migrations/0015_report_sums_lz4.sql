-- storemon schema, version 15 (numbered after its issue): a report's exact sums (672 kB at
-- 14,000 stores) were compressed with pglz on every store, tens of milliseconds of a report
-- that otherwise takes a few; lz4 does the same in a few.
ALTER TABLE reports ALTER COLUMN window_us SET COMPRESSION lz4;
