-- storemon schema, version 17: the fleet's hours of a report's week, summed by the worker
-- from its in-memory index when the dashboard asks for a report (the same sums over
-- store_days take seconds at 14,000 stores). Like a report's answer, they are a function of
-- the report time and the aggregates' version; `hours` holds (hour start, up, down) per
-- hour as little-endian int64, oldest first. Pruned with the reports.
--
-- The reports the fleet page asks for are answered like any other (and may answer others
-- of the same time and version), but kept out of the lists of reports.
ALTER TABLE reports ADD COLUMN for_dashboard boolean NOT NULL DEFAULT false;
CREATE TABLE fleet_hours (
    as_of_us      bigint      NOT NULL,
    data_version  bigint      NOT NULL,
    hours         bytea       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of_us, data_version)
);
