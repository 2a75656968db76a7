-- storemon schema, version 1. Times are integer microseconds since the Unix epoch (UTC);
-- every [start, end) is half-open.

CREATE TABLE stores (
    store_id        text PRIMARY KEY,
    schedule        jsonb NOT NULL DEFAULT '[]',  -- [[weekday, start_s, end_s], ...]; [] = 24x7
    zone            text NOT NULL DEFAULT 'America/Chicago',
    first_poll_us   bigint,            -- earliest poll ever seen (decides who is in a report)
    newest_poll_us  bigint,            -- newest poll of any kind (the default report time)
    last_poll_us    bigint,            -- last poll inside business hours: where buckets end
    last_active     boolean,
    tail_end_us     bigint,            -- end of that poll's session (2^62 when endless)
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- One row per store and UTC hour that holds observed business time. `runs` is the flat
-- list [start_us, end_us, active(1/0), ...] of the hour's status runs, so a window that
-- starts or ends inside the hour can still be summed exactly.
CREATE TABLE hourly (
    store_id        text   NOT NULL,
    hour_start_us   bigint NOT NULL,
    up_us           bigint NOT NULL,
    down_us         bigint NOT NULL,
    runs            bigint[] NOT NULL,
    PRIMARY KEY (store_id, hour_start_us)
);
CREATE INDEX hourly_by_hour ON hourly (hour_start_us);

CREATE TABLE daily (
    store_id        text   NOT NULL,
    day_start_us    bigint NOT NULL,
    up_us           bigint NOT NULL,
    down_us         bigint NOT NULL,
    PRIMARY KEY (store_id, day_start_us)
);
CREATE INDEX daily_by_day ON daily (day_start_us);

-- Polls inside the retention horizon: a report taken before the newest poll looks up the
-- two polls around its time here (an index probe per store, never a scan).
CREATE TABLE polls (
    store_id        text    NOT NULL,
    ts_us           bigint  NOT NULL,
    active          boolean NOT NULL,
    PRIMARY KEY (store_id, ts_us)
);

CREATE TABLE dead_letters (
    id              bigserial PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    source          text NOT NULL,
    reason          text NOT NULL,
    detail          text NOT NULL,
    record          jsonb NOT NULL,
    kafka_partition integer,
    kafka_offset    bigint,
    record_index    integer NOT NULL DEFAULT 0,  -- several bad rows can come in one message
    UNIQUE (source, kafka_partition, kafka_offset, record_index)
);

CREATE TABLE reports (
    report_id           uuid PRIMARY KEY,
    status              text NOT NULL CHECK (status IN ('Pending', 'Running', 'Complete', 'Failed')),
    requested_as_of_us  bigint,           -- as asked; NULL = newest poll
    as_of_us            bigint,           -- as used
    created_at          timestamptz NOT NULL DEFAULT now(),
    started_at          timestamptz,
    finished_at         timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    error               text,
    row_count           integer,
    csv                 text
);
CREATE INDEX reports_by_created ON reports (created_at);
