-- storemon schema, version 18: everything the dashboard's fleet page shows at a report time,
-- computed by the worker in the same job as the report it asks for (from its in-memory
-- index, with the schedules and zones it mirrors), so the page reads one small row instead
-- of the report's CSV and exact sums, the schedules and the sums of store_days. It replaces
-- the fleet's hours of migration 0017, which it includes.
--
-- Like a report's answer, a summary is a function of the report time and the aggregates'
-- version. `summary` holds (JSON, integers in microseconds): the store count, the fleet's
-- up and down per window (hour, day, week), its business and unobserved time (null when
-- unknown), the most-down stores with their six sums, and (hour start, up, down) of the
-- week's hours. Pruned with the reports.
DROP TABLE fleet_hours;
CREATE TABLE fleet_summaries (
    as_of_us      bigint      NOT NULL,
    data_version  bigint      NOT NULL,
    summary       jsonb       NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (as_of_us, data_version)
);
